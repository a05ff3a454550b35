"""Read-ahead for the reader: the coming shards of a worker's plan are fetched while the
current one is parsed and decoded.

Without it a worker streams one shard after another through one connection, so I/O and
decode take turns and an object store's first-byte latency is paid per block. Here the
plan (the shard pieces this worker reads, in order) is cut into byte ranges of
``range_bytes`` (sizes come from the manifest: no HEAD request), and a few threads GET them
in plan order, several in flight, into memory. :meth:`ReadAhead.open` hands the tar reader
a file object over one piece's ranges; a range it reaches that is not there yet is waited
for.

Memory is bounded: the bytes reserved by ranges being fetched, fetched and not read yet,
and the range the tar reader is on never pass ``max_bytes`` (a range is only started when
it fits). Bytes of a piece the reader left early (the last piece of a worker's part often
ends before its shard does) are dropped when the next piece is opened.

Threads are started lazily by the first :meth:`open`, so in the process that iterates (a
DataLoader worker), never in a parent that only built the dataset, and stopped by
:meth:`close`. A range whose GET failed (after the storage layer's own retries) raises in
the tar reader, which reopens the piece (``stream.read_shard`` retries); ranges a reopened
piece reads again are fetched directly, the ones still ahead come from the read-ahead.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from shardify.reader.plan import ShardEntry
from shardify.storage import Location

RANGE_BYTES = 8 << 20
"""Bytes per ranged GET: few requests per shard, and several of them in flight."""
REQUESTS = 8
"""Ranged GETs in flight at once (threads), across the coming shards."""
DEFAULT_REMOTE_BYTES = 256 << 20
"""``prefetch_bytes`` for remote URLs when not given: enough for 8 ranges of 8 MiB and a few
shards ahead, per DataLoader worker."""

Fetch = Callable[[str, int, int], bytes]
"""``fetch(name, start, end)``: bytes ``[start, end)`` of a file (``Location.read_range``)."""


@dataclass(slots=True)
class ReadAheadStats:
    """What the read-ahead of this process did (summed over its iterations)."""

    requests: int = 0
    """Ranged GETs made by the read-ahead threads."""
    direct_requests: int = 0
    """Ranges read again by the tar reader itself after a read error."""
    fetched_bytes: int = 0
    peak_bytes: int = 0
    """The most bytes the read-ahead held (reserved for GETs, fetched, being read) at once."""

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "direct_requests": self.direct_requests,
                "fetched_bytes": self.fetched_bytes, "peak_bytes": self.peak_bytes}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Piece:
    """One shard file to read through, from its first byte to ``size``."""

    name: str
    size: int


@dataclass(slots=True)
class _Range:
    piece: int
    start: int
    end: int
    data: Optional[bytes] = None
    error: Optional[BaseException] = None
    taken: bool = False
    """Handed to the tar reader (or dropped): its bytes are no longer the read-ahead's."""

    @property
    def size(self) -> int:
        return self.end - self.start


class ReadAhead:
    """Bounded background fetching of ``pieces`` in order; :meth:`open` each one in turn."""

    def __init__(self, location: Location, pieces: Sequence[Piece], *, max_bytes: int,
                 range_bytes: int = RANGE_BYTES, requests: int = REQUESTS,
                 stats: Optional[ReadAheadStats] = None, fetch: Optional[Fetch] = None) -> None:  # fmt: skip
        if max_bytes <= 0 or range_bytes <= 0 or requests <= 0:
            raise ValueError("max_bytes, range_bytes and requests must be positive")
        self.location = location
        self.pieces = list(pieces)
        self.max_bytes = max_bytes
        self.stats = stats if stats is not None else ReadAheadStats()
        self._fetch: Fetch = fetch if fetch is not None else location.read_range
        self._ranges = _cut(self.pieces, min(range_bytes, max_bytes))
        self._first = _first_ranges(self._ranges, len(self.pieces))
        self._next = 0  # the next range a thread starts
        self._kept = 0  # ranges before this one were all dropped or taken
        self._held = 0  # bytes reserved: in flight, fetched and not taken, being read
        self._opened = -1  # the piece the tar reader is on
        self._closed = False
        self._requests = requests
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()

    # -- the tar reader's side --

    def open(self, piece: int) -> io.BufferedReader:
        """A file object over piece ``piece`` from its first byte (again, after an error).

        Opening a later piece drops what is left of the earlier ones."""
        if not 0 <= piece < len(self.pieces):
            raise IndexError(f"piece {piece} is not in 0..{len(self.pieces) - 1}")
        with self._cond:
            if piece > self._opened:
                self._drop_before(self._first[piece])
                self._opened = piece
        self._start()
        return io.BufferedReader(_PieceReader(self, piece), buffer_size=1 << 16)

    def take(self, index: int) -> tuple[bytes, bool]:
        """The bytes of range ``index`` for the tar reader (waiting for its GET), and whether
        they count against ``max_bytes`` until :meth:`release` (not when read directly: a
        range read again after an error, or after :meth:`close`)."""
        with self._cond:
            item = self._ranges[index]
            while not item.taken and item.data is None and item.error is None:
                self._cond.wait()
            counted = not item.taken
            item.taken = True
            data, error, item.data, item.error = item.data, item.error, None, None
            if error is not None:
                self._held -= item.size
                self._cond.notify_all()
        if error is not None:
            raise error
        if data is None:
            self.stats.direct_requests += 1
            return self._fetch(self.pieces[item.piece].name, item.start, item.end), False
        return data, counted

    def release(self, size: int) -> None:
        """The tar reader is done with ``size`` bytes it took."""
        with self._cond:
            self._held -= size
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the threads (a GET in flight finishes first) and drop every range."""
        with self._cond:
            self._closed = True
            self._drop_before(len(self._ranges))
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the threads' side --

    def _start(self) -> None:
        if self._threads or self._closed:
            return
        self.location.fs  # noqa: B018 - make this process's client before the threads share it
        count = min(self._requests, len(self._ranges))
        self._threads = [threading.Thread(target=self._run, name=f"shardify-readahead-{i}", daemon=True)
                         for i in range(count)]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while True:
            item = self._claim()
            if item is None:
                return
            data: Optional[bytes] = None
            error: Optional[BaseException] = None
            try:
                data = self._fetch(self.pieces[item.piece].name, item.start, item.end)
            except BaseException as exc:  # noqa: BLE001 - raised in the tar reader
                error = exc
            with self._cond:
                self.stats.requests += 1
                if item.taken:  # dropped while in flight
                    self._held -= item.size
                else:
                    item.data, item.error = data, error
                    self.stats.fetched_bytes += len(data or b"")
                if data is not None and len(data) < item.size:
                    self._skip_rest(item)
                self._cond.notify_all()

    def _skip_rest(self, short: _Range) -> None:
        """A short range is the file's end (a shard shorter than the manifest says): the
        piece's later ranges not started yet are not fetched (call with the lock held)."""
        for index in range(self._next, self._first[short.piece + 1]):
            self._ranges[index].taken = True

    def _claim(self) -> Optional[_Range]:
        """The next range to GET, once it fits in ``max_bytes``; None when done or closed."""
        with self._cond:
            while not self._closed and self._next < len(self._ranges):
                item = self._ranges[self._next]
                if item.taken:
                    self._next += 1
                    continue
                if self._held + item.size <= self.max_bytes:
                    self._next += 1
                    self._held += item.size
                    self.stats.peak_bytes = max(self.stats.peak_bytes, self._held)
                    return item
                self._cond.wait()
            return None

    def _drop_before(self, stop: int) -> None:
        """Give up every range before ``stop`` not taken yet (call with the lock held)."""
        for index in range(self._kept, stop):
            item = self._ranges[index]
            if item.taken:
                continue
            item.taken = True
            if index < self._next and (item.data is not None or item.error is not None):
                self._held -= item.size  # fetched: its bytes go now (in flight: when it lands)
            item.data = item.error = None
        self._kept = max(self._kept, stop)
        self._cond.notify_all()


def default_prefetch(location: Location) -> int:
    """``prefetch_bytes`` when not given: on for remote stores, off for local disks."""
    return 0 if location.is_local else DEFAULT_REMOTE_BYTES


def read_ahead(location: Location, shards: Sequence[ShardEntry], *, max_bytes: int, range_bytes: int,
               requests: int, stats: ReadAheadStats) -> Optional[ReadAhead]:  # fmt: skip
    """The read-ahead over ``shards`` in reading order (a shard may come twice), or None when
    it is off (``max_bytes`` 0), there is nothing to read or a shard's size is unknown."""
    if max_bytes <= 0 or not shards or any(s.bytes <= 0 for s in shards):
        return None
    return ReadAhead(location, [Piece(name=s.name, size=s.bytes) for s in shards], max_bytes=max_bytes,
                     range_bytes=range_bytes, requests=requests, stats=stats)  # fmt: skip


class _PieceReader(io.RawIOBase):
    """One piece as a stream: its ranges in order, each released once read through."""

    def __init__(self, ahead: ReadAhead, piece: int) -> None:
        super().__init__()
        self._ahead = ahead
        self._next = ahead._first[piece]
        self._stop = ahead._first[piece + 1]
        self._chunk = memoryview(b"")
        self._at = 0
        self._held = 0  # bytes of the current chunk counted in the read-ahead's budget
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._at >= len(self._chunk):
            if self._eof or self._next >= self._stop:
                return 0
            self._advance()
        count = min(len(view), len(self._chunk) - self._at)
        view[:count] = self._chunk[self._at : self._at + count]
        self._at += count
        return count

    def _advance(self) -> None:
        """Move to the next range (a short one is the file's end: the shard is truncated)."""
        self._let_go()
        index, self._next = self._next, self._next + 1
        item = self._ahead._ranges[index]
        data, counted = self._ahead.take(index)
        self._held = item.size if counted else 0
        self._chunk, self._at = memoryview(data), 0
        if len(data) < item.size:
            self._eof = True

    def _let_go(self) -> None:
        if self._held:
            self._ahead.release(self._held)
            self._held = 0
        self._chunk = memoryview(b"")

    def close(self) -> None:
        if not self.closed:
            self._let_go()
        super().close()


def _cut(pieces: Sequence[Piece], size: int) -> list[_Range]:
    """Every piece's bytes as ranges of ``size`` (the last of a piece shorter), in order."""
    return [_Range(piece=p, start=start, end=min(start + size, piece.size))
            for p, piece in enumerate(pieces) for start in range(0, piece.size, size)]  # fmt: skip


def _first_ranges(ranges: Sequence[_Range], pieces: int) -> list[int]:
    """For every piece (and one past the last), the index of its first range."""
    first = [len(ranges)] * (pieces + 1)
    for index in range(len(ranges) - 1, -1, -1):
        first[ranges[index].piece] = index
    for piece in range(pieces - 1, -1, -1):  # an empty piece starts where the next one does
        first[piece] = min(first[piece], first[piece + 1])
    return first
