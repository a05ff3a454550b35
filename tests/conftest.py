"""Shared fixtures. Area-specific fixtures live in tests/fixtures/ and are plugged in here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from shardify.datagen import DatasetSpec, make_dataset

# Every module in tests/fixtures/ (one per area: ray, s3, ...) is a fixture plugin.
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)

# Tests never talk to anything but loopback; keep Ray and botocore from trying.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real media corpus ($SHARDIFY_TEST_MEDIA, e.g. ../shared/media); skips without it."""
    value = os.environ.get("SHARDIFY_TEST_MEDIA")
    if not value:
        pytest.skip("SHARDIFY_TEST_MEDIA is not set: real-media tests need the shared corpus "
                    "(.ci/run sets it to ../shared/media)")
    path = Path(value).resolve()
    if not (path / "manifest.json").is_file():
        pytest.skip(f"SHARDIFY_TEST_MEDIA={value} has no manifest.json")
    return path


@pytest.fixture
def make_ds(tmp_path: Path) -> Callable[..., Path]:
    """Make a synthetic dataset: ``make_ds(image_samples=3, ...)`` -> its root."""

    def make(name: str = "ds", **kwargs: object) -> Path:
        return make_dataset(tmp_path / name, DatasetSpec(**kwargs))  # type: ignore[arg-type]

    return make


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shardify ARGS`` in a subprocess, the way a user would."""
    return subprocess.run(
        [sys.executable, "-m", "shardify", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def write_config(path: Path, **keys: object) -> Path:
    """Write a YAML config from keyword arguments (nested dicts allowed)."""
    import yaml

    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path
