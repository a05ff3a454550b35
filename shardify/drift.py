"""``shardify verify --input``: what changed in a built output's input since its build.

The manifest records each split's JSONL (size, sha256, lines); each shard's done file records
the size (and, on local disks, the mtime) of every media file its samples read. Each is
compared with the input as it is now. Nothing is rebuilt; every difference is one line.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from shardify.inputs import Change, classify, digest_input, first_change
from shardify.layout import line_digests_name
from shardify.manifest import InputRecord, Manifest, MediaFact, load_result
from shardify.storage import Location


def input_changes(output: Location, manifest: Manifest, source: Location,
                  *, on_shard: Optional[Callable[[str], None]] = None) -> list[str]:  # fmt: skip
    """One line per split whose JSONL differs and per media file that changed or vanished."""
    changes: list[str] = []
    for split, info in manifest.splits.items():
        if info.input is None:
            changes.append(f"{split}: this build (shardify {manifest.shardify_version}) did not "
                           "record its input; nothing to compare")  # fmt: skip
            continue
        changes.extend(_jsonl_change(output, source, split, info.input))
        for shard in info.shards:
            result = load_result(output, shard.name)
            if result is None:
                changes.append(f"{shard.name}: its media record is missing; cannot check its media")
            else:
                changes.extend(c for m in result.media if (c := media_change(source, info.input.file, m)))
            if on_shard is not None:
                on_shard(shard.name)
    return changes


def _jsonl_change(output: Location, source: Location, split: str, old: InputRecord) -> list[str]:
    where = source.display(old.file)
    if source.file_size(old.file) is None:
        return [f"{where}: missing (the build read {old.lines} lines)"]
    new, prefix = digest_input(source, old.file, prefix_at=old.bytes)
    change = classify(old, new, prefix)
    if change is Change.SAME:
        return []
    if change is Change.APPENDED:
        return [f"{where}: {new.lines - old.lines} line(s) appended since the build; "
                "`shardify build` with the same config adds them"]  # fmt: skip
    try:
        digests: Optional[bytes] = output.read_bytes(line_digests_name(split))
    except FileNotFoundError:
        digests = None
    first = first_change(source, old.file, old, digests)
    at = f"{where}:{first.line}" if first.line else where
    return [f"{at}: changed since the build: {first.what}"]


def media_change(source: Location, jsonl: str, fact: MediaFact) -> Optional[str]:
    """How one media file differs from when the build read it, or None."""
    where = f"{source.display(jsonl)}:{fact.line}: {fact.path}"
    size, mtime = _now(source, fact.path)
    if size is None:
        return f"{where}: missing or unreadable now"
    if size != fact.bytes:
        return f"{where}: {fact.bytes} bytes at build time, {size} now"
    if fact.mtime_ns is not None and mtime is not None and mtime != fact.mtime_ns:
        return f"{where}: modified since the build (same size, new mtime)"
    return None


def _now(source: Location, path: str) -> tuple[Optional[int], Optional[int]]:
    if not source.is_local:
        return source.file_size(path), None
    real = source.local_realpath(path)
    try:
        info = os.stat(real) if real is not None else None
    except OSError:
        return None, None
    return (info.st_size, info.st_mtime_ns) if info is not None else (None, None)
