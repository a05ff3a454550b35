"""The fetch stage of a shard task: every medium of the coming samples is read concurrently,
and the samples come out in line order with their media in hand.

A shard task used to read and check each medium in one expression, one after another: at an
object store's 20-60 ms to first byte that is almost all waiting. Here a thread pool keeps up
to ``io.max_concurrency`` reads in flight while the task checks (decodes) earlier samples;
reads stop being submitted while the media fetched but not yet checked pass
``io.max_bytes_in_flight``. Results are consumed in line order, so the shard's bytes do not
depend on which read finished first. A per-file problem (missing, too large, unreadable) is
kept with its medium and becomes the sample's reject when the sample is checked, exactly as
if the files had been read one by one; a store error (an outage after retries) is raised
where the serial read would have raised it.

Images are fetched as bytes. Videos as a local path: in place for a local root, else a
temporary copy (bounded by ``validation.max_video_bytes``), removed once the sample is done.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Callable, Generic, Iterable, Iterator, Optional, TypeVar

from shardify.errors import MediaError
from shardify.interrupts import block_in_this_thread
from shardify.manifest import MediaFact
from shardify.mediafiles import local_media_path, media_fact, read_media, resolve_media, too_large
from shardify.storage import Location

T = TypeVar("T")
REMOTE_CONCURRENCY = 32
"""Reads in flight per shard task on an object store: enough to hide 30 ms first bytes."""
LOCAL_CONCURRENCY = 4
"""Reads in flight on a local disk: overlaps I/O with checks, cheap on page-cached files."""
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Medium:
    """One file a sample references, and how to fetch it."""

    path: str
    where: str
    """The field that names it, for messages: ``images[1]``, ``video.path``."""
    line: int
    video: bool = False
    max_bytes: Optional[int] = None


@dataclass(slots=True)
class Fetched:
    """A fetched medium: its bytes (image) or a local file (video), or why it could not be."""

    medium: Medium
    data: bytes = b""
    file: str = ""
    fact: Optional[MediaFact] = None
    error: Optional[MediaError] = None
    temporary: bool = False

    @property
    def nbytes(self) -> int:
        """What it holds: its bytes in memory, or its temporary copy on local disk."""
        if self.temporary and self.fact is not None:
            return self.fact.bytes
        return len(self.data)

    def unwrap(self) -> Fetched:
        """Itself, or raise the MediaError the fetch met."""
        if self.error is not None:
            raise self.error
        return self

    def release(self) -> None:
        if self.temporary and self.file and os.path.exists(self.file):
            os.unlink(self.file)


def fetch_medium(source: Location, medium: Medium) -> Fetched:
    """Read one medium; MediaError is kept in the result, StorageError propagates."""
    try:
        if not medium.video:
            data = read_media(source, medium.path, medium.where, max_bytes=medium.max_bytes)
            return Fetched(medium, data=data, fact=media_fact(source, medium.line, medium.path, len(data)))
        size = resolve_media(source, medium.path, medium.where, max_bytes=medium.max_bytes)
        fact = media_fact(source, medium.line, medium.path, size)
        if source.is_local:
            return Fetched(medium, file=local_media_path(source, medium.path, medium.where), fact=fact)
        return Fetched(medium, file=_copy_to_temp(source, medium), fact=fact, temporary=True)
    except MediaError as exc:
        return Fetched(medium, error=exc)


def _copy_to_temp(source: Location, medium: Medium) -> str:
    suffix = os.path.splitext(medium.path)[1][:16]
    handle, path = tempfile.mkstemp(prefix="shardify-video-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out, source.open(medium.path, "rb") as remote:
            _copy_bounded(remote, out, medium)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _copy_bounded(src: IO[bytes], dst: IO[bytes], medium: Medium) -> None:
    copied = 0
    while chunk := src.read(_COPY_CHUNK):
        copied += len(chunk)
        if medium.max_bytes is not None and copied > medium.max_bytes:
            raise too_large(medium.where, medium.path, copied, medium.max_bytes)
        dst.write(chunk)


@dataclass(slots=True)
class _Pending(Generic[T]):
    item: T
    media: list[Medium]
    futures: list[Future[Fetched]] = field(default_factory=list)


class _Budget:
    """Bytes held by reads handed out and not consumed: the finished ones exactly, the
    running ones estimated (the mean size read so far; before any, the per-file limit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._total = 0

    def watch(self, future: Future[Fetched]) -> None:
        future.add_done_callback(self._done)

    def _done(self, future: Future[Fetched]) -> None:
        if not future.cancelled() and future.exception() is None:
            with self._lock:
                self._count += 1
                self._total += future.result().nbytes

    def held(self, window: Iterable[_Pending[T]]) -> int:
        with self._lock:
            mean = self._total / self._count if self._count else None
        held = 0.0
        for pending in window:
            for medium, future in zip(pending.media, pending.futures):
                if not future.done():
                    held += mean if mean is not None else (medium.max_bytes or 0)
                elif not future.cancelled() and future.exception() is None:
                    held += future.result().nbytes
        return int(held)


def concurrency_for(source: Location, configured: Optional[int]) -> int:
    """``io.max_concurrency``, or the default for this kind of store."""
    if configured is not None:
        return configured
    return LOCAL_CONCURRENCY if source.is_local else REMOTE_CONCURRENCY


def prefetch(
    source: Location,
    items: Iterable[T],
    media_of: Callable[[T], list[Medium]],
    *,
    concurrency: int,
    max_bytes: int,
    fetch: Callable[[Location, Medium], Fetched] = fetch_medium,
) -> Iterator[tuple[T, list[Future[Fetched]]]]:
    """``(item, its media reads)`` for every item, in order, the reads running ahead.

    At most ``concurrency`` reads are handed out and not yet consumed (so at most that many
    run at once); no new item is started while those reads hold, or are estimated to hold,
    more than ``max_bytes`` (running reads count as the mean size read so far; before the
    first finishes, as their per-file limit). So memory stays near ``max_bytes`` plus one
    sample's media, whatever the concurrency. The caller takes each read's ``result()`` in
    order (a store error surfaces there, where a serial read would have met it) and must
    :func:`release` what it is handed.
    """
    if concurrency <= 1:
        for item in items:
            yield item, [_done(fetch, source, m) for m in media_of(item)]
        return
    window: deque[_Pending[T]] = deque()
    budget = _Budget()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shardify-fetch",
                            initializer=block_in_this_thread) as pool:  # fmt: skip
        try:
            for item in items:
                while window and _full(window, budget, concurrency, max_bytes):
                    head = window.popleft()
                    yield head.item, head.futures
                media = media_of(item)
                pending = _Pending(item, media, [pool.submit(fetch, source, m) for m in media])
                for future in pending.futures:
                    budget.watch(future)
                window.append(pending)
            while window:
                head = window.popleft()
                yield head.item, head.futures
        finally:
            for pending in window:  # stopped early (an error, a failing sample): clean up
                release(pending.futures)


def release(futures: list[Future[Fetched]]) -> None:
    """Remove the temporary files of fetched media (cancelling reads not started yet)."""
    for future in futures:
        if future.cancel():
            continue
        if future.exception() is None:
            future.result().release()


def _done(fn: Callable[[Location, Medium], Fetched], source: Location, medium: Medium) -> Future[Fetched]:
    future: Future[Fetched] = Future()
    try:
        future.set_result(fn(source, medium))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        future.set_exception(exc)
    return future


def _full(window: deque[_Pending[T]], budget: _Budget, concurrency: int, max_bytes: int) -> bool:
    """Whether to consume before starting another item: ``concurrency`` reads are handed out
    and not consumed, or they hold (or are about to hold) more than ``max_bytes``."""
    if sum(len(p.futures) for p in window) >= concurrency:
        return True
    return budget.held(window) > max_bytes
