"""The persisted records of a build, typed: manifest.json, the build state, shard results.

One frozen record per concept, each with ``to_json``/``from_json``:

- :class:`InputRecord`: one split's JSONL as the build read it (size, sha256, lines);
- :class:`ShardRecord`: one shard: its tar (name, bytes, sha256), the input it came from
  (line range, byte range, sha256 of those bytes) and its counts;
- :class:`SplitInfo`: a split's input, totals and shards, as listed in manifest.json;
- :class:`Manifest`: format, version, the settings that shaped the output, the splits;
- :class:`BuildState`: ``_shardify/build.json``, what a running build is building;
- :class:`ShardResult`: a shard's record plus its rejects and media facts (the done file).

Names below an output live in :mod:`shardify.layout`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Optional

import orjson

from shardify._version import __version__
from shardify.config import settings_fingerprint
from shardify.errors import ManifestError
from shardify.layout import (
    BUILD_STATE_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    WARNINGS_NAME,
    result_name,
)
from shardify.schema import RejectRecord, WarningRecord
from shardify.storage import Location

MANIFEST_FORMAT = "shardify.manifest/1"
"""Round 2 added keys (each split's ``input``, each shard's input range and counts); every
key of round 1 is still there with its meaning, so readers of round-1 manifests read these."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRecord:
    """One split's JSONL file as a build read it."""

    file: str
    bytes: int
    sha256: str
    lines: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "bytes": self.bytes, "sha256": self.sha256, "lines": self.lines}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputRecord:
        return cls(file=str(data["file"]), bytes=int(data["bytes"]), sha256=str(data["sha256"]),
                   lines=int(data["lines"]))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardRecord:
    """One shard: the tar, the input bytes it was built from, and what they held."""

    name: str
    samples: int
    bytes: int
    sha256: str
    first_line: int = 0
    """0-based index of the shard's first input line; ``end_line`` is one past its last."""
    end_line: int = 0
    start_byte: int = 0
    end_byte: int = 0
    input_sha256: str = ""
    """sha256 of the input bytes ``[start_byte, end_byte)``; empty in round-1 manifests."""
    blank: int = 0
    images: int = 0
    frames: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return self.end_line - self.first_line

    @property
    def rejected(self) -> int:
        return sum(self.rejects_by_reason.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256,
            "first_line": self.first_line, "end_line": self.end_line,
            "start_byte": self.start_byte, "end_byte": self.end_byte,
            "input_sha256": self.input_sha256, "blank": self.blank, "images": self.images,
            "frames": self.frames, "rejects_by_reason": self.rejects_by_reason,
            "warnings": self.warnings,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardRecord:
        ints = {k: int(data.get(k, 0)) for k in ("first_line", "end_line", "start_byte", "end_byte",
                                                 "blank", "images", "frames")}  # fmt: skip
        return cls(
            name=str(data["name"]), samples=int(data["samples"]), bytes=int(data["bytes"]),
            sha256=str(data["sha256"]), input_sha256=str(data.get("input_sha256", "")),
            rejects_by_reason=_counts(data.get("rejects_by_reason")),
            warnings=_counts(data.get("warnings")), **ints,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFact:
    """A media file as a shard task read it, for ``shardify verify --input``."""

    line: int
    """1-based line of the sample that references it."""
    path: str
    bytes: int
    mtime_ns: Optional[int] = None
    """Local files only; remote stores give no stamp on the reads the build does."""

    def to_json(self) -> list[Any]:
        return [self.line, self.path, self.bytes, self.mtime_ns]

    @classmethod
    def from_json(cls, data: list[Any]) -> MediaFact:
        line, path, size, mtime = data
        return cls(line=int(line), path=str(path), bytes=int(size),
                   mtime_ns=None if mtime is None else int(mtime))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardResult:
    """Everything one shard task produced apart from the tar: the done file's content."""

    split: str
    index: int
    shard: ShardRecord
    rejects: tuple[RejectRecord, ...] = ()
    warnings: tuple[WarningRecord, ...] = ()
    media: tuple[MediaFact, ...] = ()

    def without_details(self) -> ShardResult:
        """A copy without rejects, warnings and media facts (they stay in the done file)."""
        return replace(self, rejects=(), warnings=(), media=())

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "index": self.index, "shard": self.shard.to_json(),
                "rejects": [r.to_json() for r in self.rejects],
                "warnings": [w.to_json() for w in self.warnings],
                "media": [m.to_json() for m in self.media]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardResult:
        return cls(split=str(data["split"]), index=int(data["index"]),
                   shard=ShardRecord.from_json(data["shard"]),
                   rejects=tuple(RejectRecord(**r) for r in data["rejects"]),
                   warnings=tuple(WarningRecord(**w) for w in data.get("warnings", ())),
                   media=tuple(MediaFact.from_json(m) for m in data.get("media", ())))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitInfo:
    """One split in manifest.json: its input, totals over its shards, and the shards."""

    source: str
    input: Optional[InputRecord]
    """None in round-1 manifests, which did not record their input."""
    lines: int
    samples: int
    rejected: int
    blank: int
    images: int
    frames: int
    rejects_by_reason: dict[str, int]
    warnings: dict[str, int]
    shards: tuple[ShardRecord, ...]

    @classmethod
    def from_shards(cls, source: str, input: Optional[InputRecord], shards: Iterable[ShardRecord]) -> SplitInfo:
        shards = tuple(shards)
        reasons: Counter[str] = Counter()
        warnings: Counter[str] = Counter()
        for shard in shards:
            reasons.update(shard.rejects_by_reason)
            warnings.update(shard.warnings)
        return cls(
            source=source, input=input, lines=sum(s.lines for s in shards),
            samples=sum(s.samples for s in shards), rejected=sum(reasons.values()),
            blank=sum(s.blank for s in shards), images=sum(s.images for s in shards),
            frames=sum(s.frames for s in shards), rejects_by_reason=dict(sorted(reasons.items())),
            warnings=dict(sorted(warnings.items())), shards=shards,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "input": self.input.to_json() if self.input else None,
            "lines": self.lines, "samples": self.samples, "rejected": self.rejected,
            "blank": self.blank, "rejects_by_reason": self.rejects_by_reason,
            "warnings": self.warnings, "images": self.images, "frames": self.frames,
            "shards": [s.to_json() for s in self.shards],
        }  # fmt: skip

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> SplitInfo:
        raw_input = data.get("input")
        return cls(
            source=str(data.get("source", f"{name}.jsonl")),
            input=InputRecord.from_json(raw_input) if raw_input else None,
            lines=int(data["lines"]), samples=int(data["samples"]), rejected=int(data["rejected"]),
            blank=int(data["blank"]), images=int(data.get("images", 0)),
            frames=int(data.get("frames", 0)),
            rejects_by_reason=_counts(data.get("rejects_by_reason")),
            warnings=_counts(data.get("warnings")),
            shards=tuple(ShardRecord.from_json(s) for s in data.get("shards", [])),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """manifest.json: written last; its presence means the build is complete."""

    config: dict[str, Any]
    splits: dict[str, SplitInfo]
    config_sha256: str = ""
    shardify_version: str = __version__
    format: str = MANIFEST_FORMAT

    def __post_init__(self) -> None:
        if not self.config_sha256:
            object.__setattr__(self, "config_sha256", settings_fingerprint(self.config))

    @property
    def inputs(self) -> dict[str, Optional[InputRecord]]:
        return {name: info.input for name, info in self.splits.items()}

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "shardify_version": self.shardify_version,
                "config_sha256": self.config_sha256, "config": self.config,
                "splits": {name: info.to_json() for name, info in self.splits.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(format=str(data["format"]), shardify_version=str(data.get("shardify_version", "?")),
                   config_sha256=str(data.get("config_sha256", "")), config=dict(data.get("config") or {}),
                   splits={n: SplitInfo.from_json(n, i) for n, i in data["splits"].items()})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildState:
    """``_shardify/build.json``: the config of the running build and, once planned, its input."""

    config_sha256: str
    config: dict[str, Any]
    inputs: Optional[dict[str, InputRecord]] = None

    def to_json(self) -> dict[str, Any]:
        inputs = None if self.inputs is None else {k: v.to_json() for k, v in self.inputs.items()}
        return {"config_sha256": self.config_sha256, "config": self.config, "inputs": inputs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildState:
        inputs = data.get("inputs")
        return cls(config_sha256=str(data["config_sha256"]), config=dict(data.get("config") or {}),
                   inputs=None if inputs is None else
                   {k: InputRecord.from_json(v) for k, v in inputs.items()})  # fmt: skip


def _counts(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (value or {}).items()}


# -- reading and writing --


def save_result(output: Location, result: ShardResult) -> None:
    output.write_bytes(result_name(result.shard.name), orjson.dumps(result.to_json()))


def load_result(output: Location, shard_name: str) -> Optional[ShardResult]:
    """The saved result of a finished shard, or None when it is not (fully) done."""
    try:
        raw = output.read_bytes(result_name(shard_name))
        return ShardResult.from_json(orjson.loads(raw))
    except FileNotFoundError:
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def write_manifest(output: Location, manifest: Manifest) -> None:
    output.write_bytes(MANIFEST_NAME, orjson.dumps(manifest.to_json(), option=orjson.OPT_INDENT_2) + b"\n")


def read_manifest(output: Location) -> Manifest:
    """Read and sanity-check manifest.json; ManifestError says what is wrong."""
    where = output.display(MANIFEST_NAME)
    try:
        raw = output.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        raise ManifestError(
            f"{where}: not found; is this a shardify output, and did its build finish?"
        ) from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{where}: not a {MANIFEST_FORMAT} manifest")
    if not isinstance(data.get("splits"), dict):
        raise ManifestError(f"{where}: has no 'splits'")
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: a field is missing or has the wrong type ({exc!r})") from None


def has_manifest(output: Location) -> bool:
    return output.exists(MANIFEST_NAME)


def read_build_state(output: Location) -> Optional[BuildState]:
    try:
        raw = output.read_bytes(BUILD_STATE_NAME)
    except FileNotFoundError:
        return None
    try:
        return BuildState.from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{output.display(BUILD_STATE_NAME)}: unreadable ({exc!r}); "
                            "rerun with --overwrite to start over") from None  # fmt: skip


def write_build_state(output: Location, state: BuildState) -> None:
    output.write_bytes(BUILD_STATE_NAME, orjson.dumps(state.to_json()))


def write_trails(output: Location, results: Iterable[ShardResult]) -> None:
    """rejects.jsonl and warnings.jsonl from the shards' results in input order, streamed
    through local temp files and each committed in one piece."""
    names = (REJECTS_NAME, WARNINGS_NAME)
    stagings = [output.staging_path(name) for name in names]
    try:
        with open(stagings[0], "wb") as rejects, open(stagings[1], "wb") as warnings:
            for result in results:
                for reject in result.rejects:
                    rejects.write(orjson.dumps(reject.to_json()) + b"\n")
                for warning in result.warnings:
                    warnings.write(orjson.dumps(warning.to_json()) + b"\n")
        for staging, name in zip(stagings, names):
            output.put_file(staging, name)
    finally:
        for staging in stagings:
            if os.path.exists(staging):
                os.unlink(staging)


def read_rejects(output: Location) -> list[dict[str, Any]]:
    try:
        raw = output.read_bytes(REJECTS_NAME)
    except FileNotFoundError:
        return []
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
