"""Get the sampled frames of one video stream out of the decoder, exactly and cheaply.

Frame ``i`` is the i-th frame the decoder outputs (presentation order) and ``T`` is the
number of frames that decode (CONTRACT.md §1): packet counts and headers only estimate it.
One demux pass (about 1% of the decode time) reads the packet table first; then:

* **counting** (the default): one pass to the end of the stream, or to the first decode
  error, counts T exactly and keeps (still in YUV) every frame that some T in a small window
  around the packet count would sample. Only when the true T falls outside that window
  (corrupt or truncated files) does a second pass decode up to the last needed frame.
* **seeking**: when the packet table is clean (timestamps on every packet, unique; a
  keyframe first; the container's own count agrees) and the needed frames are far apart
  with keyframes between them, T is the packet count and each needed frame is decoded from
  the keyframe before it. Every decoded frame must carry the timestamp of its rank and the
  last GOP is always decoded to the end, or the video goes back to counting. What this mode
  cannot see: a decode error inside a GOP it skips (docs/video.md).

This module is imported lazily (by :func:`shardify.media.video.extract_video`) and works
on PyAV objects; it never converts a frame to RGB.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import av

from shardify.media.video import Sampling, sample_indices

BUFFER_BYTES = 256 << 20
"""Keep demuxed packets in memory up to this size (seeking needs them); else re-demux."""
SEEK_OVERHEAD = 4
"""What one seek costs, in frames' worth of decoding (decoder flush and refill)."""
SEEK_MAX_SHARE = 0.5
"""Seek only when the plan decodes at most this share of the stream's frames."""
WINDOW_BELOW, WINDOW_ABOVE = 8, 2
"""Candidate T values kept while counting: packet count - 8 .. packet count + 2."""


class DistrustError(Exception):
    """The packet table turned out not to describe the decoded frames; count instead."""


@dataclass(slots=True)
class PacketTable:
    """The demuxed video packets in decode order, with what the plan needs to know."""

    packets: list[Any] = field(default_factory=list)
    """The packets themselves; empty when the stream exceeded BUFFER_BYTES."""
    pts: list[Optional[int]] = field(default_factory=list)
    keyframe: list[bool] = field(default_factory=list)
    discard: list[bool] = field(default_factory=list)
    empty: int = 0
    buffered: bool = True
    demux_error: Optional[str] = None

    @property
    def count(self) -> int:
        """Packets that should each give one presented frame (an estimate of T)."""
        return len(self.pts) - sum(self.discard)


@dataclass(frozen=True, slots=True)
class RankIndex:
    """For a trusted table: per rank, its pts, its packet and the keyframe to start from."""

    sorted_pts: list[int]
    decode_pos: list[int]
    entry: list[int]


@dataclass(slots=True)
class Picked:
    """The result of a decode: the kept frames by index, T, and how it ended."""

    frames: dict[int, Any]
    total: int
    pts: list[Optional[int]]
    """Presentation timestamps of all T frames in index order (None where unknown)."""
    error: Optional[str] = None
    """Why decoding stopped before the end of the stream, if it did."""


def describe_error(exc: BaseException) -> str:
    """A stable one-line reason without file names (reject details must be deterministic)."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {reason}"


def read_packets(container: Any, stream: Any, budget: int = BUFFER_BYTES) -> PacketTable:
    """Demux every packet of ``stream`` once, keeping payloads up to ``budget`` bytes."""
    table = PacketTable()
    size = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                table.empty += packet.pts is not None or packet.dts is not None
                if table.buffered and (packet.pts is not None or packet.dts is not None):
                    table.packets.append(packet)
                continue
            table.pts.append(packet.pts)
            table.keyframe.append(bool(packet.is_keyframe))
            table.discard.append(bool(packet.is_discard))
            size += packet.size
            if table.buffered and size > budget:
                table.buffered, table.packets = False, []
            if table.buffered:
                table.packets.append(packet)
    except av.FFmpegError as exc:
        table.demux_error = describe_error(exc)
    return table


def rank_index(table: PacketTable, header_frames: int, format_name: str) -> Optional[RankIndex]:
    """The rank index when the table can be trusted to predict the decoded frames, else None."""
    pts = table.pts
    if not (table.buffered and pts and table.keyframe[0]) or table.demux_error or table.empty:
        return None
    if "avi" in format_name.split(",") or any(p is None for p in pts):
        return None  # AVI packets carry decode-order stamps, not presentation times
    if header_frames and header_frames != len(pts):
        return None  # the container's own index disagrees with what demuxes (truncation)
    shown = sorted(p for p, d in zip(pts, table.discard) if p is not None and not d)
    if not shown:
        return None
    if len(set(shown)) != len(shown) or len(set(pts)) != len(pts):
        return None
    by_pts = {p: i for i, p in enumerate(pts)}
    keys = [i for i, k in enumerate(table.keyframe) if k]
    decode_pos = [by_pts[p] for p in shown]
    entry = []
    for target, pos in zip(shown, decode_pos):
        k = bisect.bisect_right(keys, pos) - 1
        while k > 0 and (pts[keys[k]] or 0) > target:
            k -= 1  # a leading picture of an open GOP needs the GOP before
        entry.append(keys[k])
    return RankIndex(sorted_pts=shown, decode_pos=decode_pos, entry=entry)


def plan_seeks(index: RankIndex, targets: list[int]) -> tuple[list[tuple[int, Optional[int]]], int]:
    """Per target rank (sorted), where to seek first (None: keep decoding), and the cost.

    The cost counts decoded frames plus SEEK_OVERHEAD per seek; a seek is taken when it
    is cheaper than decoding on from the current position.
    """
    plan: list[tuple[int, Optional[int]]] = []
    pos, cost = -1, 0
    for rank in targets:
        target_pos, entry = index.decode_pos[rank], index.entry[rank]
        if target_pos <= pos:
            plan.append((rank, None))
            continue
        onward = target_pos - pos
        jump = SEEK_OVERHEAD + target_pos - entry + 1
        if pos < 0 or (entry > pos + 1 and jump < onward):
            plan.append((rank, entry))
            cost += jump if pos >= 0 or entry > 0 else onward
        else:
            plan.append((rank, None))
            cost += onward
        pos = target_pos
    return plan, cost


def should_seek(index: RankIndex, targets: list[int]) -> Optional[list[tuple[int, Optional[int]]]]:
    """The seek plan (with the last frame as a tail check) if it saves enough, else None."""
    total = len(index.sorted_pts)
    plan, cost = plan_seeks(index, sorted(set(targets) | {total - 1}))
    jumps = sum(1 for _, seek_to in plan[1:] if seek_to is not None)
    return plan if jumps and cost <= SEEK_MAX_SHARE * total else None


def decode_seeking(
    table: PacketTable,
    index: RankIndex,
    codec: Any,
    plan: list[tuple[int, Optional[int]]],
    keep: set[int],
) -> Picked:
    """Decode the planned ranks, verifying each frame's timestamp; raises DistrustError."""
    got: dict[int, Any] = {}
    frames: Optional[Iterator[tuple[int, Any]]] = None
    for rank, seek_to in plan:
        if seek_to is not None:
            codec.flush_buffers()
            frames = _ranked_frames(table, index, codec, seek_to)
        if frames is None:
            raise DistrustError("no start position")
        for got_rank, frame in frames:
            if got_rank in keep:
                got[got_rank] = frame
            if got_rank >= rank:
                break
        else:
            raise DistrustError(f"the stream ended before frame {rank}")
    if frames is not None and next(frames, None) is not None:
        raise DistrustError("more frames than packets")
    total = len(index.sorted_pts)
    return Picked(frames=got, total=total, pts=list(index.sorted_pts))


def _ranked_frames(
    table: PacketTable, index: RankIndex, codec: Any, start: int
) -> Iterator[tuple[int, Any]]:
    base = table.pts[start]
    if base is None:
        raise DistrustError(f"packet {start} has no pts")
    expected = bisect.bisect_left(index.sorted_pts, base)
    try:
        for frame in _decode(codec, table.packets[start:], flush=True):
            if frame.pts is not None and frame.pts < base:
                continue  # a leading picture that belongs to the GOP before
            if expected >= len(index.sorted_pts) or frame.pts != index.sorted_pts[expected]:
                raise DistrustError(f"frame {expected} has pts {frame.pts}, not the packet's")
            if frame.is_corrupt:
                raise DistrustError(f"frame {expected} decoded with errors after a seek")
            yield expected, frame
            expected += 1
    except av.FFmpegError as exc:
        raise DistrustError(describe_error(exc)) from None


def candidate_indices(estimate: int, num_frames: int, sampling: Sampling) -> set[int]:
    """Every index that sampling would pick for some T in the window around ``estimate``."""
    keep: set[int] = set()
    for total in range(max(1, estimate - WINDOW_BELOW), max(1, estimate + WINDOW_ABOVE) + 1):
        keep.update(sample_indices(total, num_frames, sampling))
    return keep


def decode_counting(
    packets: Iterator[Any],
    codec: Any,
    keep: set[int],
    *,
    flush: bool = True,
    stop_after: Optional[int] = None,
) -> Picked:
    """Decode in order, keeping frames whose index is in ``keep``, to the end or first error.

    With ``stop_after`` it stops once that index is out (a pass where T is already known).
    """
    got: dict[int, Any] = {}
    stamps: list[Optional[int]] = []
    error = None
    try:
        for frame in _decode(codec, packets, flush=flush):
            index = len(stamps)
            stamps.append(frame.pts)
            if index in keep:
                got[index] = frame
            if stop_after is not None and index >= stop_after:
                break
    except av.FFmpegError as exc:
        error = describe_error(exc)
    return Picked(frames=got, total=len(stamps), pts=stamps, error=error)


def _decode(codec: Any, packets: Any, *, flush: bool) -> Iterator[Any]:
    """Frames of ``packets`` in output order, like ``container.decode`` (errors propagate)."""
    flushed = False
    for packet in packets:
        flushed = packet.size == 0
        yield from codec.decode(packet)
    if flush and not flushed:
        yield from codec.decode(None)


def demuxed(container: Any, stream: Any) -> Iterator[Any]:
    """A fresh demux of ``stream`` (what ``container.decode`` feeds its decoder)."""
    return iter(container.demux(stream))
