"""Pure planning: lines of a split -> an ordered list of shard tasks.

Shards are fixed from input order before any work starts, so shard k always covers the
same input lines whatever executes it. A shard covers a contiguous byte range of the JSONL
file; lines that fail the cheap schema checks (or are blank) ride along with their
neighbours and show up in ``rejects.jsonl``, so a shard may end up holding fewer samples
than planned when media checks reject some of its lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from shardify.layout import shard_name

__all__ = ["LineInfo", "ShardTask", "plan_shards", "shard_name"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineInfo:
    """What planning needs to know about one input line."""

    index: int
    offset: int
    length: int
    weight: Optional[int]
    """Estimated bytes in the shard if the line is a candidate sample; None otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardTask:
    """One unit of work: the lines ``[first_line, end_line)`` of one split's file."""

    split: str
    file: str
    index: int
    first_line: int
    end_line: int
    start_byte: int
    end_byte: int
    candidates: int

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def plan_shards(
    lines: Iterable[LineInfo],
    *,
    split: str,
    file: str,
    max_samples: int,
    target_bytes: Optional[int] = None,
    max_lines: Optional[int] = None,
) -> Iterator[ShardTask]:
    """Group consecutive lines into shards of at most ``max_samples`` candidates.

    With ``target_bytes``, a shard is also closed before a candidate that would take its
    estimated size past the target (a shard always takes at least one candidate). With
    ``max_lines``, a shard also covers at most that many lines, which bounds a task's work
    when most lines are rejected. Every line lands in exactly one shard; a split with lines
    but no candidates gets one shard (or one per ``max_lines`` lines).
    """
    if max_samples < 1 or (max_lines is not None and max_lines < 1):
        raise ValueError("max_samples and max_lines must be >= 1")
    start: Optional[LineInfo] = None
    end_line = end_byte = 0
    count = size = index = 0
    for line in lines:
        if start is None:
            start = line
        elif _closes(line, count, size, line.index - start.index, max_samples, target_bytes, max_lines):
            yield _task(split, file, index, start, end_line, end_byte, count)
            index += 1
            start, count, size = line, 0, 0
        if line.weight is not None:
            count += 1
            size += line.weight
        end_line, end_byte = line.index + 1, line.offset + line.length
    if start is not None:
        yield _task(split, file, index, start, end_line, end_byte, count)


def _closes(
    line: LineInfo,
    count: int,
    size: int,
    lines_so_far: int,
    max_samples: int,
    target_bytes: Optional[int],
    max_lines: Optional[int],
) -> bool:
    """Whether the open shard must be closed before ``line``."""
    if max_lines is not None and lines_so_far >= max_lines:
        return True
    if line.weight is None:
        return False
    too_big = target_bytes is not None and count > 0 and size + line.weight > target_bytes
    return count >= max_samples or too_big


def _task(
    split: str, file: str, index: int, start: LineInfo, end_line: int, end_byte: int, count: int
) -> ShardTask:
    return ShardTask(
        split=split, file=file, index=index, first_line=start.index, end_line=end_line,
        start_byte=start.offset, end_byte=end_byte, candidates=count,
    )  # fmt: skip
