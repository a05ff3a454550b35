"""``ShardDataset``: stream a shardify output into training, equal per rank, exactly resumable.

A ``torch.utils.data.IterableDataset`` when torch is installed, a plain iterable otherwise.
The order of an epoch is fixed by ``(seed, epoch, world_size, num_workers)`` (see
:mod:`shardify.reader.plan`), so the position inside an epoch is a count of samples per
DataLoader worker, and ``state_dict()`` is a small JSON-serialisable dict.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Generator, Iterator, Literal, Optional, Union

from shardify.errors import ManifestError, ReaderError
from shardify.manifest import read_manifest
from shardify.reader.decode import SampleDecodeError, decode_sample
from shardify.reader.epoch import SharedEpoch
from shardify.reader.plan import (
    Segment,
    ShardEntry,
    ShiftedWanted,
    always_wanted,
    any_in,
    buffer_order,
    loader_counts,
    make_rng,
    rank_length,
    shard_order,
    stream_segments,
    worker_lengths,
    worker_span,
)
from shardify.reader.readahead import (
    RANGE_BYTES,
    REQUESTS,
    ReadAheadStats,
    default_prefetch,
    read_ahead,
)
from shardify.reader.resume import Resumable
from shardify.reader.stream import RawSample, ReadStats, SampleFailure, read_shard
from shardify.storage import Location

try:  # torch is optional: without it ShardDataset is a plain iterable
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # pragma: no cover - exercised only where torch is missing
    _Base = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

STATE_FORMAT = "shardify.reader/1"
_MISSED_STATE = (
    "load_state_dict was called in the main process after this DataLoader worker had started "
    "(persistent_workers=True keeps workers between epochs), so the worker cannot continue the "
    "loaded state: load the state before the first iter(loader), or make a new DataLoader "
    "after loading it"
)
"""A worker's copy made before the main process loaded a state cannot continue that state."""
_PLAN_KEYS = ("seed", "shuffle", "shuffle_buffer", "drop_last", "world_size", "samples")
"""State fields that fix the order of an epoch: a state only fits a reader that agrees."""


class ShardDataset(Resumable, _Base):  # type: ignore[misc,valid-type]
    """The samples of one split of a shardify output, streamed from its shards.

    Each sample is a dict: ``key``, ``messages`` (a ``video`` item expanded into one
    ``image`` item per frame), ``images`` (RGB PIL images in order, or their stored bytes
    with ``decode_images=False``) and the sample json's other fields (``source``,
    ``image_paths``, ``video`` metadata). ``transform`` is applied to each sample in the
    process that reads it (a DataLoader worker).

    Every rank yields exactly ``len(ds)`` samples per epoch: ``ceil(N / world_size)`` with
    ``drop_last=False`` (a few samples repeat), ``floor(N / world_size)`` with
    ``drop_last=True`` (a few are left out). ``on_error="skip"`` replaces a corrupt sample
    with another one of the same worker (so the count stays exact) and logs a warning;
    ``"raise"`` raises ReaderError.

    ``prefetch_bytes``: while a shard is read, the coming shards of this worker are fetched
    with concurrent ranged GETs into at most this many bytes of memory per process (each
    DataLoader worker has its own); ``0`` streams one shard after another. Default: 256 MiB
    for remote URLs, ``0`` for local paths (the kernel reads ahead there).
    """

    max_consecutive_skips: int = 100
    """With ``on_error="skip"``: more corrupt samples than this in a row raise ReaderError
    instead of repeating one good sample forever (set it on the instance to change it)."""
    prefetch_range_bytes: int = RANGE_BYTES
    """Bytes per ranged GET of the read-ahead (capped at ``prefetch_bytes``)."""
    prefetch_requests: int = REQUESTS
    """Ranged GETs the read-ahead keeps in flight (its threads per iterating process)."""

    def __init__(
        self,
        url: str,
        split: str = "train",
        shuffle: bool = True,
        seed: int = 0,
        storage_options: Optional[dict[str, Any]] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = False,
        shuffle_buffer: int = 1000,
        decode_images: bool = True,
        transform: Optional[Callable[[dict[str, Any]], Any]] = None,
        on_error: Literal["skip", "raise"] = "skip",
        retries: int = 2,
        prefetch_bytes: Optional[int] = None,
    ) -> None:
        _check_arguments(rank, world_size, on_error, shuffle_buffer, retries, prefetch_bytes)
        self.location = Location(url, storage_options)
        self.prefetch_bytes = default_prefetch(self.location) if prefetch_bytes is None else prefetch_bytes
        self.prefetch_stats = ReadAheadStats()  # this process's read-ahead, all iterations
        self.split = split
        self.shards = _read_shards(self.location, split)
        self.samples = sum(s.samples for s in self.shards)
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.drop_last, self.decode_images, self.transform = drop_last, decode_images, transform
        self.on_error, self.retries = on_error, retries
        self._epoch = SharedEpoch(0)  # shared with DataLoader workers, persistent ones too
        self.stats = ReadStats()
        self._rank, self._world_size = rank, world_size
        self._base: Optional[dict[str, Any]] = None  # a loaded state not yet used
        self._loads_seen = 0  # states the main process had loaded when this copy was made
        self._position: Optional[dict[str, int]] = None  # epoch, worker, num_workers, count

    def __repr__(self) -> str:
        rank, world = self.world()
        return (f"ShardDataset({self.location.url!r}, split={self.split!r}, shards={len(self.shards)}, "
                f"samples={self.samples}, rank={rank}/{world}, epoch={self.epoch})")  # fmt: skip

    def __len__(self) -> int:
        """Samples this rank yields per epoch (the same on every rank)."""
        return rank_length(self.samples, self.world()[1], drop_last=self.drop_last)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn have no process group: pin the rank now.
        state = dict(self.__dict__)
        state["_rank"], state["_world_size"] = self.world()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def world(self) -> tuple[int, int]:
        """``(rank, world_size)``: explicit arguments, else torch.distributed, else (0, 1)."""
        if self._rank is not None and self._world_size is not None:
            return self._rank, self._world_size
        try:
            import torch.distributed as dist
        except ImportError:
            return 0, 1
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    # -- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self.iter_part(*_worker_info())

    def iter_part(self, worker: int, parts: int) -> Iterator[Any]:
        """Iterate as DataLoader worker ``worker`` of ``parts`` would (for other frameworks)."""
        if not 0 <= worker < max(1, parts):
            raise ReaderError(f"part {worker} is not in 0..{max(1, parts) - 1}")
        parts = max(1, parts)
        if self._epoch.loads != self._loads_seen:  # raised from next(): torch then hands it
            return _raise(ReaderError(_MISSED_STATE))  # to the main process, even on a resume
        rank, world = self.world()
        _warn_few_shards(len(self.shards), world, parts, rank=rank, worker=worker, shuffle=self.shuffle)
        epoch = self.epoch  # read once: this iteration keeps it
        worker, start = self._take_base(worker, parts)
        order = shard_order(self.shards, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        first, length = worker_span(self.samples, rank, world, worker, parts, drop_last=self.drop_last)
        segments = stream_segments(order, first, length)
        rng = make_rng("samples", self.seed, epoch, rank, worker) if self.shuffle else None
        emit = buffer_order(length, self.shuffle_buffer, rng)
        self._position = {"epoch": epoch, "worker": worker, "num_workers": parts, "count": start}
        return self._generate(segments, emit, self._position)

    def _generate(self, segments: list[Segment], emit: list[int],
                  position: dict[str, int]) -> Iterator[Any]:  # fmt: skip
        """Read the segments in stream order; yield samples in ``emit`` order from the
        position's count, which it advances. Stopping early stops the read-ahead too."""
        raws = self._read_stream(segments, emit, position["count"])
        try:
            yield from self._emit(raws, emit, position)
        finally:
            raws.close()

    def _emit(self, raws: Iterator[tuple[int, Union[RawSample, SampleFailure]]], emit: list[int],
              position: dict[str, int]) -> Iterator[Any]:  # fmt: skip
        start = position["count"]
        held: dict[int, Union[RawSample, SampleFailure]] = {}
        last_good: Any = None
        owed = 0  # failed slots waiting for the first good sample to stand in
        in_a_row = 0  # consecutive corrupt samples (Megatron-Energon's runaway-skip guard)
        for slot in range(start, len(emit)):
            wanted = emit[slot]
            while wanted not in held:
                index, item = next(raws, (None, None))
                if index is None or item is None:
                    raise ReaderError(f"internal: stream ended before sample {wanted}")
                held[index] = item
            sample = self._finish(held.pop(wanted))
            in_a_row = in_a_row + 1 if sample is None else 0
            if in_a_row > self.max_consecutive_skips:
                raise ReaderError(
                    f"{self.location.url}: {in_a_row} corrupt samples in a row (epoch "
                    f"{position['epoch']}); the shards or the reading code are likely broken: run "
                    "`shardify verify` on the output (raise ShardDataset.max_consecutive_skips "
                    "to tolerate more)"
                )
            if sample is None and last_good is None:
                owed += 1
                continue
            if sample is not None:
                last_good = sample
            for _ in range(owed + 1):
                position["count"] += 1
                yield last_good
            owed = 0
        if owed:
            raise ReaderError(f"{self.location.url}: no readable sample in this worker's part of "
                              f"epoch {position['epoch']}; {owed} samples were corrupt")  # fmt: skip

    def _read_stream(
        self, segments: list[Segment], emit: list[int], start: int
    ) -> Generator[tuple[int, Union[RawSample, SampleFailure]], None, None]:
        """``(stream index, sample)`` for every sample still to be emitted, in stream order."""
        needed = sorted(emit[start:]) if start else None
        wanted_set = set(needed) if needed is not None else None
        todo = [seg for seg in segments
                if needed is None or any_in(needed, seg.offset, seg.offset + seg.stop - seg.first)]  # fmt: skip
        ahead = read_ahead(self.location, [s.shard for s in todo], max_bytes=self.prefetch_bytes,
                           range_bytes=self.prefetch_range_bytes, requests=self.prefetch_requests,
                           stats=self.prefetch_stats)  # fmt: skip
        try:
            for at, seg in enumerate(todo):
                shift = seg.offset - seg.first
                wanted = always_wanted if wanted_set is None else ShiftedWanted(wanted_set, shift)
                opener = None if ahead is None else functools.partial(ahead.open, at)
                items = read_shard(self.location, seg.shard.name, seg.first, seg.stop, wanted=wanted,
                                   retries=self.retries, stats=self.stats, opener=opener)  # fmt: skip
                for item in items:
                    yield item.index + shift, item
        finally:
            if ahead is not None:
                ahead.close()

    def _finish(self, item: Union[RawSample, SampleFailure]) -> Any:
        """The decoded, transformed sample; None for a corrupt one when skipping."""
        try:
            if isinstance(item, SampleFailure):
                raise SampleDecodeError(item.reason)
            sample = decode_sample(item, decode_images=self.decode_images)
        except SampleDecodeError as exc:
            if self.on_error == "raise":
                raise ReaderError(f"{self.location.url}: {exc}") from None
            self.stats.skipped_samples += 1
            kind = "corrupt_shard" if isinstance(item, SampleFailure) else "undecodable_sample"
            self.stats.reasons[kind] = self.stats.reasons.get(kind, 0) + 1
            log.warning("%s: skipping a corrupt sample (%s); another sample takes its place "
                        "(%d skipped in this process)", self.location.url, exc,
                        self.stats.skipped_samples)  # fmt: skip
            return None
        return self.transform(sample) if self.transform is not None else sample

    # -- state -------------------------------------------------------------------------

    def state_after(self, steps: int, loader: Any) -> dict[str, Any]:
        """The state after a training loop took ``steps`` batches from ``loader`` this epoch.

        For a plain ``torch.utils.data.DataLoader`` (any ``num_workers``): it hands out
        batches round-robin from its workers, so the count per worker follows from ``steps``.
        """
        if not getattr(loader, "in_order", True):
            raise ReaderError("state_after needs a DataLoader with in_order=True")
        parts = max(1, int(loader.num_workers))
        lengths = worker_lengths(self.samples, self.world()[1], parts, drop_last=self.drop_last)
        start = [0] * parts
        if self._base is not None and self._base["num_workers"] in (None, parts):
            start = [int(self._base["consumed"].get(str(k), 0)) for k in range(parts)]
        rotation = int(self._base.get("rotation", 0)) if self._base is not None else 0
        epoch = self.epoch
        counts, turn = loader_counts(lengths, start, steps, batch_size=loader.batch_size,
                                     drop_last=bool(loader.drop_last), first=rotation)  # fmt: skip
        return self._state(epoch, parts, {str(k): c for k, c in enumerate(counts)}, rotation=turn)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the saved epoch with exactly the samples not yet yielded."""
        self._load(state, STATE_FORMAT, _PLAN_KEYS)

    def _state(self, epoch: int, num_workers: Optional[int], consumed: dict[str, int], *,
               rotation: int = 0) -> dict[str, Any]:  # fmt: skip
        rank, world = self.world()
        return {
            "format": STATE_FORMAT, "epoch": epoch, "seed": self.seed,
            "shuffle": self.shuffle, "shuffle_buffer": self.shuffle_buffer,
            "drop_last": self.drop_last, "world_size": world, "rank": rank,
            "samples": self.samples, "num_workers": num_workers, "consumed": consumed,
            "rotation": rotation, "stats": self.stats.to_json(),
        }  # fmt: skip


def _raise(error: Exception) -> Iterator[Any]:
    raise error
    yield  # a generator: the error comes from the first next()


_warned_few: set[tuple[int, int, int]] = set()


def _warn_few_shards(shards: int, world: int, parts: int, *, rank: int, worker: int, shuffle: bool) -> None:
    """Once per process: fewer shards than reader parts (ranks x workers) keeps each part
    inside the same one or two shards, so with shuffle a part sees much the same samples
    every epoch (only their order changes)."""
    key = (shards, world, parts)
    if not shuffle or shards >= world * parts or rank or worker or key in _warned_few:
        return
    _warned_few.add(key)
    log.warning("%d shard(s) for %d rank(s) x %d worker(s): each reader part stays within the same "
                "shard(s) every epoch, so it sees mostly the same samples (shuffled); rebuild with "
                "a smaller shard.max_samples for at least %d shards", shards, world, parts,
                2 * world * parts)  # fmt: skip


def _worker_info() -> tuple[int, int]:
    """``(worker id, number of parts)`` inside a torch DataLoader worker, else ``(0, 1)``."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return 0, 1
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _read_shards(location: Location, split: str) -> tuple[ShardEntry, ...]:
    manifest = read_manifest(location)
    info = manifest.splits.get(split)
    if info is None:
        raise ManifestError(f"{location.display('manifest.json')}: no split {split!r}; it has "
                            f"{sorted(manifest.splits)}")  # fmt: skip
    return tuple(ShardEntry(name=s.name, samples=s.samples, bytes=s.bytes) for s in info.shards)


def _check_arguments(rank: Optional[int], world_size: Optional[int], on_error: str,
                     shuffle_buffer: int, retries: int, prefetch_bytes: Optional[int]) -> None:  # fmt: skip
    if (rank is None) != (world_size is None):
        raise ReaderError("give both rank= and world_size=, or neither (then torch.distributed decides)")
    if world_size is not None and rank is not None and not 0 <= rank < world_size:
        raise ReaderError(f"rank={rank} is not in 0..{world_size - 1} (world_size={world_size})")
    if on_error not in ("skip", "raise"):
        raise ReaderError(f"on_error={on_error!r}: use 'skip' or 'raise'")
    if shuffle_buffer < 0 or retries < 0:
        raise ReaderError("shuffle_buffer and retries must not be negative")
    if prefetch_bytes is not None and prefetch_bytes < 0:
        raise ReaderError(f"prefetch_bytes={prefetch_bytes}: give 0 (no read-ahead) or a byte count")
