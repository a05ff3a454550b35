"""The on-disk records of a build: shard records, per-shard results, manifest.json.

Names of everything shardify writes below an output root live here and nowhere else.
``manifest.json`` is written last; its presence means the build is complete. While a build
runs, each finished shard leaves a small result file in ``_shardify/`` so a rerun knows
what is done; the directory is removed once the manifest is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import orjson

from shardify import __version__
from shardify.config import settings_fingerprint
from shardify.errors import ManifestError
from shardify.schema import RejectRecord
from shardify.storage import Location

MANIFEST_FORMAT = "shardify.manifest/1"
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
STATE_DIR = "_shardify"
BUILD_STATE_NAME = f"{STATE_DIR}/build.json"


def result_name(shard_name: str) -> str:
    """Where a finished shard's result record lives while the build runs."""
    return f"{STATE_DIR}/done/{shard_name}.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardRecord:
    """One shard as listed in manifest.json."""

    name: str
    samples: int
    bytes: int
    sha256: str


@dataclass(slots=True, kw_only=True)
class ShardResult:
    """Everything one shard task produced, apart from the tar itself."""

    split: str
    index: int
    shard: ShardRecord
    lines: int
    blank: int
    rejects: list[RejectRecord] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    images: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    """Rejects per reason; kept when ``rejects`` is dropped to save the driver's memory."""

    def __post_init__(self) -> None:
        if self.rejects and not self.reject_reasons:
            self.reject_reasons = dict(sorted(Counter(r.reason for r in self.rejects).items()))

    def without_rejects(self) -> ShardResult:
        """A copy without the reject records (they stay in the saved result file)."""
        return dataclasses.replace(self, rejects=[], reject_reasons=dict(self.reject_reasons))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["rejects"] = [r.to_json() for r in self.rejects]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardResult:
        return cls(
            split=data["split"], index=data["index"], shard=ShardRecord(**data["shard"]),
            lines=data["lines"], blank=data["blank"],
            rejects=[RejectRecord(**r) for r in data["rejects"]],
            warnings=dict(data["warnings"]), frames=data["frames"], images=data["images"],
        )  # fmt: skip


def save_result(output: Location, result: ShardResult) -> None:
    output.write_bytes(result_name(result.shard.name), orjson.dumps(result.to_json()))


def load_result(output: Location, shard_name: str) -> Optional[ShardResult]:
    """The saved result of a finished shard, or None when it is not (fully) done."""
    try:
        raw = output.read_bytes(result_name(shard_name))
        return ShardResult.from_json(orjson.loads(raw))
    except FileNotFoundError:
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def split_summary(source: str, results: Iterable[ShardResult]) -> dict[str, Any]:
    """The manifest entry of one split, from its shards' results in order."""
    shards: list[dict[str, Any]] = []
    lines = blank = samples = frames = images = 0
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for result in results:
        shards.append(dataclasses.asdict(result.shard))
        lines += result.lines
        blank += result.blank
        samples += result.shard.samples
        frames += result.frames
        images += result.images
        reasons.update(result.reject_reasons)
        warnings.update(result.warnings)
    return {
        "source": source, "lines": lines, "samples": samples,
        "rejected": sum(reasons.values()), "blank": blank,
        "rejects_by_reason": dict(sorted(reasons.items())),
        "warnings": dict(sorted(warnings.items())),
        "images": images, "frames": frames, "shards": shards,
    }  # fmt: skip


def make_manifest(settings: dict[str, Any], splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest: format, version, the settings that shaped the output and their hash."""
    return {
        "format": MANIFEST_FORMAT,
        "shardify_version": __version__,
        "config_sha256": settings_fingerprint(settings),
        "config": settings,
        "splits": splits,
    }


def write_manifest(output: Location, manifest: dict[str, Any]) -> None:
    output.write_bytes(MANIFEST_NAME, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


def read_manifest(output: Location) -> dict[str, Any]:
    """Read and sanity-check manifest.json; ManifestError says what is wrong."""
    where = output.display(MANIFEST_NAME)
    try:
        raw = output.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        raise ManifestError(
            f"{where}: not found; is this a shardify output, and did its build finish?"
        ) from None
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{where}: not a {MANIFEST_FORMAT} manifest")
    if not isinstance(manifest.get("splits"), dict):
        raise ManifestError(f"{where}: has no 'splits'")
    return manifest


def has_manifest(output: Location) -> bool:
    return output.exists(MANIFEST_NAME)


def write_rejects(output: Location, rejects: Iterable[RejectRecord]) -> None:
    """Stream reject records through a local temp file, then commit it in one piece."""
    staging = output.staging_path(REJECTS_NAME)
    try:
        with open(staging, "wb") as handle:
            for reject in rejects:
                handle.write(orjson.dumps(reject.to_json()) + b"\n")
        output.put_file(staging, REJECTS_NAME)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def read_rejects(output: Location) -> list[dict[str, Any]]:
    try:
        raw = output.read_bytes(REJECTS_NAME)
    except FileNotFoundError:
        return []
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
