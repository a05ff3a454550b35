"""What a build knows about its input: digests, and how a rerun's input differs.

Before it plans, a build hashes each split's JSONL in one fast pass (no parsing) into an
:class:`~shardify.manifest.InputRecord` (size, sha256, lines); while it plans, it writes an
8-byte digest per line (``_shardify/lines/<split>.bin``). A rerun compares the JSONL with
them: unchanged, appended (the old file is a byte prefix of the new one), or changed, in
which case the first changed line is named from the line digests.
"""

from __future__ import annotations

import enum
import hashlib
import sys
import zlib
from array import array
from dataclasses import dataclass
from typing import IO, Optional

from shardify.manifest import InputRecord
from shardify.storage import Location

LINE_DIGEST_BYTES = 8
_CHUNK = 1 << 20
_MARKS = 1 << 16


def line_digest(raw: bytes) -> bytes:
    """The 8-byte digest of one input line (its ending included): CRC-32 and length.

    It only has to name the first changed line once the file's sha256 said it changed, so a
    cheap digest is enough (planning computes one per line).
    """
    return _pack([zlib.crc32(raw), len(raw) & 0xFFFFFFFF])


def _pack(marks: array[int] | list[int]) -> bytes:
    packed = array("I", marks)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


class LineMarks:
    """Per-line digests written as the planner reads a split: 8 bytes a line."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._marks: array[int] = array("I")
        self.lines = 0

    def feed(self, raw: bytes) -> None:
        marks = self._marks
        marks.append(zlib.crc32(raw))
        marks.append(len(raw) & 0xFFFFFFFF)
        if len(marks) >= _MARKS:
            self.flush()

    def flush(self) -> None:
        if self._marks:
            self.lines += len(self._marks) // 2
            self._out.write(_pack(self._marks))
            self._marks = array("I")


class InputHasher:
    """Fed a split's JSONL in chunks cut anywhere: its sha256, size and line count, and its
    sha256 over the first ``prefix_at`` bytes (to tell an append from an edit)."""

    def __init__(self, file: str, *, prefix_at: Optional[int] = None) -> None:
        self.file = file
        self.prefix_at = prefix_at
        self.prefix_sha256: Optional[str] = None
        self._digest = hashlib.sha256()
        self._size = 0
        self._lines = 0
        self._tail = b""  # the last byte seen: a final line without newline still counts

    def feed(self, data: bytes) -> None:
        at = self.prefix_at
        if at is not None and self.prefix_sha256 is None and self._size + len(data) >= at:
            head = self._digest.copy()
            head.update(data[: at - self._size])
            self.prefix_sha256 = head.hexdigest()
        self._digest.update(data)
        self._size += len(data)
        self._lines += data.count(b"\n")
        self._tail = data[-1:] or self._tail

    def record(self) -> InputRecord:
        lines = self._lines + (1 if self._tail not in (b"", b"\n") else 0)
        if self.prefix_at == self._size and self.prefix_sha256 is None:
            self.prefix_sha256 = self._digest.hexdigest()
        return InputRecord(file=self.file, bytes=self._size, sha256=self._digest.hexdigest(), lines=lines)


def digest_input(source: Location, file: str, *, prefix_at: Optional[int] = None) -> tuple[InputRecord, Optional[str]]:
    """One streaming pass over ``file``: its record, and its sha256 over the first
    ``prefix_at`` bytes (None when the file is shorter)."""
    hasher = InputHasher(file, prefix_at=prefix_at)
    with source.open(file, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.feed(chunk)
    record = hasher.record()
    return record, hasher.prefix_sha256


class Change(enum.Enum):
    SAME = "same"
    APPENDED = "appended"
    CHANGED = "changed"


def classify(old: InputRecord, new: InputRecord, prefix_sha256: Optional[str]) -> Change:
    """How ``new`` relates to ``old``, given ``new``'s sha256 over its first ``old.bytes``."""
    if new.bytes == old.bytes and new.sha256 == old.sha256:
        return Change.SAME
    if new.bytes > old.bytes and prefix_sha256 == old.sha256:
        return Change.APPENDED
    return Change.CHANGED


@dataclass(frozen=True, slots=True)
class FirstChange:
    """Where a changed input first differs from what a build read."""

    line: Optional[int]
    """1-based; None when the build's line digests are not available."""
    what: str


def first_change(source: Location, file: str, old: InputRecord, old_digests: Optional[bytes]) -> FirstChange:
    """Compare ``file`` line by line against the digests a build recorded."""
    if old_digests is None or len(old_digests) != old.lines * LINE_DIGEST_BYTES:
        return FirstChange(None, f"its content differs from the {old.lines} lines the build read")
    seen = 0
    for index, (_, raw) in enumerate(source.iter_lines(file)):
        if index >= old.lines:
            break
        seen = index + 1
        at = index * LINE_DIGEST_BYTES
        if line_digest(raw) != old_digests[at : at + LINE_DIGEST_BYTES]:
            return FirstChange(seen, f"line {seen} differs from the line the build read")
    if seen < old.lines:
        return FirstChange(seen + 1, f"it now ends after line {seen} (the build read {old.lines} lines)")
    return FirstChange(None, "its bytes differ from what the build read, though every line matches")
