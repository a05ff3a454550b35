"""Pure planning for the reader: which samples each rank and worker reads, in which order.

One epoch's order is a function of ``(seed, epoch)`` and the manifest alone:

1. the shards are shuffled (or kept in manifest order) into one *global stream* of ``N``
   samples that is the same for every world size;
2. rank ``r`` of ``W`` takes the contiguous span ``[r*L, (r+1)*L)`` of that stream, with
   ``L = ceil(N/W)`` (``drop_last=False``: positions past ``N`` wrap to the start, so a few
   samples repeat) or ``L = floor(N/W)`` (``drop_last=True``: the tail is dropped);
3. DataLoader worker ``k`` of ``K`` takes a contiguous part of its rank's span;
4. a seeded shuffle buffer permutes each worker's part.

Because every step is deterministic, the reader's position is just a count of samples
yielded per worker, which is all a ``state_dict`` needs to hold.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence


@dataclass(frozen=True, slots=True)
class ShardEntry:
    """One shard of a split, as the manifest lists it."""

    name: str
    samples: int
    bytes: int = 0
    """The tar's size (manifest); 0 when unknown, which turns read-ahead off."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Samples ``[first, stop)`` of one shard; ``offset`` is the stream index of ``first``."""

    shard: ShardEntry
    first: int
    stop: int
    offset: int


def make_rng(*parts: object) -> random.Random:
    """A generator seeded from ``parts`` (string seeding is stable across processes)."""
    return random.Random(":".join(str(p) for p in parts))


def shard_order(shards: Sequence[ShardEntry], *, seed: int, epoch: int, shuffle: bool) -> list[ShardEntry]:
    """The shards of one epoch in reading order."""
    ordered = list(shards)
    if shuffle:
        make_rng("shards", seed, epoch).shuffle(ordered)
    return ordered


def rank_length(total: int, world_size: int, *, drop_last: bool) -> int:
    """Samples every rank yields per epoch."""
    if drop_last:
        return total // world_size
    return -(-total // world_size)


def split_span(length: int, part: int, parts: int) -> tuple[int, int]:
    """``(start, length)`` of part ``part`` of ``parts`` near-equal contiguous parts."""
    base, extra = divmod(length, parts)
    start = part * base + min(part, extra)
    return start, base + (1 if part < extra else 0)


def worker_span(total: int, rank: int, world_size: int, worker: int, num_workers: int, *,
                drop_last: bool) -> tuple[int, int]:  # fmt: skip
    """``(start, length)`` in the global stream of one worker of one rank.

    ``start + length`` may pass ``total``: those positions wrap around to the stream's start.
    """
    per_rank = rank_length(total, world_size, drop_last=drop_last)
    start, length = split_span(per_rank, worker, max(1, num_workers))
    return rank * per_rank + start, length


def worker_lengths(total: int, world_size: int, num_workers: int, *, drop_last: bool) -> list[int]:
    """Samples each DataLoader worker of a rank yields (the same for every rank)."""
    per_rank = rank_length(total, world_size, drop_last=drop_last)
    return [split_span(per_rank, k, max(1, num_workers))[1] for k in range(max(1, num_workers))]


def stream_segments(order: Sequence[ShardEntry], start: int, length: int) -> list[Segment]:
    """The shard pieces that make up stream positions ``[start, start+length)`` (wrapping)."""
    total = sum(s.samples for s in order)
    if length <= 0 or total == 0:
        return []
    if length > total:
        raise ValueError(f"a span of {length} samples is longer than the stream ({total})")
    segments = list(_segments_from(order, start % total, length, 0))
    covered = sum(s.stop - s.first for s in segments)
    if covered < length:  # the span wraps past the stream's end
        segments.extend(_segments_from(order, 0, length - covered, covered))
    return segments


def _segments_from(order: Sequence[ShardEntry], position: int, length: int, offset: int) -> Iterator[Segment]:
    """Segments from ``position`` to at most the stream's end, covering up to ``length``."""
    shard_start = 0
    for shard in order:
        shard_stop = shard_start + shard.samples
        if length <= 0:
            return
        if shard_stop > position:
            first = max(position, shard_start) - shard_start
            stop = min(shard.samples, first + length)
            yield Segment(shard=shard, first=first, stop=stop, offset=offset)
            offset += stop - first
            length -= stop - first
            position = shard_stop
        shard_start = shard_stop


def buffer_order(length: int, buffer_size: int, rng: Optional[random.Random]) -> list[int]:
    """The order in which a shuffle buffer of ``buffer_size`` emits items ``0..length-1``.

    Same semantics as webdataset's ``shuffle``: fill the buffer, then for every new item
    emit a random buffered one. Computed on indices only, so it can be replayed on resume
    without reading any data. ``rng=None`` or a buffer of 1 keeps the input order.
    """
    if rng is None or buffer_size <= 1:
        return list(range(length))
    buffer: list[int] = []
    out: list[int] = []
    randrange = rng.randrange
    for index in range(length):
        buffer.append(index)
        if len(buffer) >= buffer_size:
            pick = randrange(len(buffer))
            buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
            out.append(buffer.pop())
    while buffer:
        pick = randrange(len(buffer))
        buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
        out.append(buffer.pop())
    return out


def loader_counts(lengths: Sequence[int], start: Sequence[int], steps: int, *,
                  batch_size: Optional[int], drop_last: bool, first: int = 0) -> tuple[list[int], int]:  # fmt: skip
    """Samples consumed per worker after a DataLoader delivered ``steps`` batches, and the
    worker whose batch comes next.

    A torch DataLoader (``in_order=True``) takes batches from its workers round-robin,
    starting at ``first``, and skips a worker once it is exhausted; each worker batches only
    its own samples. ``start`` is where each worker began (a resumed epoch).
    """
    size = batch_size or 1
    parts = len(lengths)
    remaining = [max(0, n - s) for n, s in zip(lengths, start)]
    counts = list(start)
    turn = first % parts if parts else 0
    idle = 0  # consecutive turns without a batch: all exhausted once it reaches parts
    while steps > 0 and idle < parts:
        take = min(size, remaining[turn])
        if take == 0 or (drop_last and batch_size is not None and take < size):
            idle += 1
        else:
            counts[turn] += take
            remaining[turn] -= take
            steps -= 1
            idle = 0
        turn = (turn + 1) % parts
    return counts, turn


def always_wanted(index: int) -> bool:
    return True


class ShiftedWanted:
    """``wanted`` for one segment: is shard sample ``index`` among the stream's needed ones?"""

    def __init__(self, needed: set[int], shift: int) -> None:
        self.needed, self.shift = needed, shift

    def __call__(self, index: int) -> bool:
        return index + self.shift in self.needed


def any_in(sorted_values: list[int], low: int, high: int) -> bool:
    """Whether a value of ``sorted_values`` lies in ``[low, high)``."""
    at = bisect.bisect_left(sorted_values, low)
    return at < len(sorted_values) and sorted_values[at] < high
