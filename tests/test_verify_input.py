"""``shardify verify --input``: after a build, report the JSONL lines and media files that
changed since (size, mtime, gone), one line each, exit 1; exit 0 when nothing changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shardify.datagen import DatasetSpec, make_dataset, make_image
from tests.conftest import run_cli, write_config


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=4, video_samples=1, text_samples=1,
                                                     images_per_sample=1, test_split=False))  # fmt: skip
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out), executor={"kind": "local"})
    assert run_cli("build", str(cfg)).returncode == 0
    return root, out


def _changed(done: object) -> list[str]:
    return [line for line in str(done).splitlines() if line.startswith("CHANGED ")]


def _image_lines(root: Path) -> list[tuple[int, str]]:
    """(1-based line, its first image) for every image line of train.jsonl."""
    import orjson

    docs = [orjson.loads(raw) for raw in (root / "train.jsonl").read_bytes().splitlines()]
    return [(n, str(doc["images"][0])) for n, doc in enumerate(docs, 1) if doc.get("images")]


def test_nothing_changed_is_ok(built: tuple[Path, Path]) -> None:
    _, out = built
    done = run_cli("verify", str(out), "--input")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK:" in done.stdout and "input compared" in done.stdout and not _changed(done.stdout)


def test_changed_and_vanished_media_are_named(built: tuple[Path, Path]) -> None:
    root, out = built
    (a, grown), (b, touched), (c, gone) = _image_lines(root)[:3]
    (root / grown).write_bytes(make_image(200, 100, seed=9))
    stamp = (root / touched).stat()
    os.utime(root / touched, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    (root / gone).unlink()
    done = run_cli("verify", str(out), "--input", str(root))
    assert done.returncode == 1
    changed = _changed(done.stdout)
    assert len(changed) == 3, done.stdout
    assert f"train.jsonl:{a}: {grown}:" in changed[0] and "bytes at build time" in changed[0]
    assert f"train.jsonl:{b}: {touched}: modified since the build" in changed[1]
    assert f"train.jsonl:{c}: {gone}: missing or unreadable now" in changed[2]
    assert "FAILED (3 problem(s))" in done.stdout


def test_a_changed_video_is_named(built: tuple[Path, Path]) -> None:
    root, out = built
    video = next(root.rglob("*.mp4"))
    with open(video, "ab") as handle:
        handle.write(b"\0" * 100)
    changed = _changed(run_cli("verify", str(out), "--input").stdout)
    assert len(changed) == 1 and video.name in changed[0] and "bytes at build time" in changed[0]


def test_jsonl_appended_or_edited_is_reported(built: tuple[Path, Path]) -> None:
    root, out = built
    jsonl = root / "train.jsonl"
    lines = jsonl.read_bytes().splitlines(keepends=True)
    jsonl.write_bytes(b"".join(lines + lines[:2]))
    changed = _changed(run_cli("verify", str(out), "--input").stdout)
    assert changed == [f"CHANGED {jsonl}: 2 line(s) appended since the build; `shardify build` with the "
                       "same config adds them"]  # fmt: skip
    jsonl.write_bytes(b"".join([lines[0], b"\n"] + lines[1:]))
    changed = _changed(run_cli("verify", str(out), "--input").stdout)
    assert len(changed) == 1 and f"{jsonl}:2: changed since the build: line 2 differs" in changed[0]
