"""``shardify verify``: recompute every shard's sha256 and counts and decode every member."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Optional, cast

import orjson
from PIL import Image

from shardify.manifest import ShardRecord, SplitInfo, read_manifest, read_rejects
from shardify.storage import Location
from shardify.tarwriter import split_member_name

_CHUNK = 1 << 20


@dataclass(slots=True)
class VerifyReport:
    """Problems found (empty when the output is sound) and what was checked."""

    problems: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    members: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_output(output: Location, *, on_shard: Optional[Callable[[str], None]] = None) -> VerifyReport:
    """Check an output against its manifest; never raises for a bad shard, reports it."""
    manifest = read_manifest(output)
    report = VerifyReport()
    rejects = read_rejects(output)
    for split, info in manifest.splits.items():
        _check_counts(split, info, rejects, report)
        for shard in info.shards:
            _check_shard(output, shard, report)
            if on_shard is not None:
                on_shard(shard.name)
    return report


def _check_counts(split: str, info: SplitInfo, rejects: list[dict[str, Any]], report: VerifyReport) -> None:
    if info.samples + info.rejected + info.blank != info.lines:
        report.problems.append(
            f"{split}: samples {info.samples} + rejected {info.rejected} + blank "
            f"{info.blank} != lines {info.lines}"
        )
    listed = sum(s.samples for s in info.shards)
    if listed != info.samples:
        report.problems.append(f"{split}: shards hold {listed} samples, manifest says {info.samples}")
    in_file = sum(1 for r in rejects if r.get("split") == split)
    if in_file != info.rejected:
        report.problems.append(f"{split}: rejects.jsonl has {in_file} lines, manifest says {info.rejected}")
    _check_ranges(split, info, report)


def _check_ranges(split: str, info: SplitInfo, report: VerifyReport) -> None:
    """Shards cover the input without gaps or overlaps, in order (round-2 manifests)."""
    if info.input is None:
        return
    line = byte = 0
    for shard in info.shards:
        if (shard.first_line, shard.start_byte) != (line, byte):
            report.problems.append(f"{split}: {shard.name} starts at line {shard.first_line + 1}, byte "
                                   f"{shard.start_byte}; the shard before it ended at line {line}, "
                                   f"byte {byte}")  # fmt: skip
        line, byte = shard.end_line, shard.end_byte
    if (line, byte) != (info.input.lines, info.input.bytes):
        report.problems.append(f"{split}: shards cover {line} lines ({byte} bytes) of "
                               f"{info.input.file}, which had {info.input.lines} ({info.input.bytes})")  # fmt: skip


def _check_shard(output: Location, shard: ShardRecord, report: VerifyReport) -> None:
    name = shard.name
    report.shards += 1
    try:
        handle = output.open(name, "rb")
    except FileNotFoundError:
        report.problems.append(f"{name}: missing")
        return
    with handle:
        hashing = _HashingReader(handle)
        try:
            keys = _check_members(cast(IO[bytes], hashing), name, report)
        except (tarfile.TarError, OSError, EOFError) as exc:
            report.problems.append(f"{name}: not a readable tar: {exc}")
            return
        hashing.drain()
    if hashing.size != shard.bytes:
        report.problems.append(f"{name}: {hashing.size} bytes, manifest says {shard.bytes}")
    if hashing.digest.hexdigest() != shard.sha256:
        report.problems.append(f"{name}: sha256 differs from the manifest (corrupt or replaced)")
    if keys != shard.samples:
        report.problems.append(f"{name}: {keys} samples, manifest says {shard.samples}")
    report.samples += keys


def _check_members(stream: IO[bytes], shard: str, report: VerifyReport) -> int:
    keys: dict[str, set[str]] = {}
    docs: dict[str, Any] = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            key, suffix = split_member_name(member.name)
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            report.members += 1
            keys.setdefault(key, set()).add(suffix)
            problem = _decode_member(suffix, data)
            if problem:
                report.problems.append(f"{shard}: {member.name}: {problem}")
            elif suffix == "json":
                docs[key] = orjson.loads(data)
    for key, suffixes in keys.items():
        _check_references(shard, key, docs.get(key), suffixes, report)
    return len(keys)


def _decode_member(suffix: str, data: bytes) -> Optional[str]:
    if suffix == "json":
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return f"bad json: {exc}"
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # Pillow raises many types for corrupt data
        return f"does not decode: {exc}"
    return None


def _check_references(shard: str, key: str, doc: Any, suffixes: set[str], report: VerifyReport) -> None:
    if not isinstance(doc, dict):
        report.problems.append(f"{shard}: sample {key} has no json member")
        return
    wanted = list(doc.get("images") or [])
    video = doc.get("video")
    if isinstance(video, dict):
        wanted += list(video.get("frames") or [])
    missing = sorted(set(wanted) - suffixes)
    if missing:
        report.problems.append(f"{shard}: sample {key} lists members it lacks: {missing}")


class _HashingReader:
    """Reads through a file object, hashing and counting every byte read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass
