"""``MixedDataset``: draw from several ShardDatasets in given proportions, exactly resumable.

One epoch of one rank is ``N`` positions (``samples_per_epoch``, by default the sum of the
sources' ``len()``). The source of each position comes from a seeded schedule, a pure
function of ``(seed, epoch, rank, position)`` drawn in blocks of :data:`BLOCK`.

Each source is read for the rank as an endless sequence of *passes*: pass ``j`` is the
source's own part for this rank (its own options: shuffle, buffer, decode, transform) in the
order of a source epoch derived from ``(seed, epoch, source, j)`` (with ``shuffle=False``:
its fixed order, started at a seeded point and wrapping around), so a pass holds each
sample of the part once. A source
drawn less often than its size is subsampled differently each epoch; one drawn more often
repeats, in a new order.

DataLoader worker ``k`` of ``K`` takes a contiguous part of the rank's positions (as
ShardDataset does with samples) and, of each source, the contiguous stretch of its passes
that those positions draw: the rank yields the same samples whatever ``num_workers`` is.
Everything is deterministic, so a worker's place is one count of positions; replaying the
schedule up to it gives each source's pass and place. ``state_dict()`` holds those counts.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import MutableMapping
from typing import Any, Iterator, Optional, Sequence

from shardify.errors import ReaderError
from shardify.reader.dataset import ShardDataset, _raise, _worker_info
from shardify.reader.epoch import SharedEpoch
from shardify.reader.plan import loader_counts, make_rng, split_span
from shardify.reader.resume import Resumable

try:  # torch is optional, as for ShardDataset
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # pragma: no cover - exercised only where torch is missing
    _Base = object  # type: ignore[assignment,misc]

MIXED_STATE_FORMAT = "shardify.mixed/1"
BLOCK = 1024
"""Positions drawn from one seeded generator: the schedule can start anywhere cheaply."""
_MISSED_STATE = (
    "MixedDataset.load_state_dict was called in the main process after this DataLoader worker "
    "had started (persistent_workers=True), so the worker cannot continue the loaded state: "
    "load the state before the first iter(loader), or make a new DataLoader after loading it"
)
_SOURCE_PLAN = ("samples", "seed", "shuffle", "shuffle_buffer", "drop_last")
"""A source's settings that fix its order: a state only fits sources that agree."""


class MixedDataset(Resumable, _Base):  # type: ignore[misc,valid-type]
    """Samples of several ShardDatasets mixed by ``weights``; each gains ``dataset``: its
    source's index in ``datasets``.

    ``len()`` is the samples every rank yields per epoch: ``samples_per_epoch`` (per rank)
    or the sum of the sources' ``len()``. Proportions follow the weights up to sampling noise
    (each position draws its source independently). The order is fixed by ``(seed, epoch)``,
    the world size and ``num_workers``; ``set_epoch`` and ``state_dict``/``load_state_dict``
    work as for ShardDataset (persistent workers, StatefulDataLoader, ``state_after``).
    """

    _state_name = "MixedDataset"

    def __init__(self, datasets: Sequence[ShardDataset], weights: Sequence[float], *,
                 seed: int = 0, samples_per_epoch: Optional[int] = None) -> None:  # fmt: skip
        self.datasets = list(datasets)
        self.weights = _check_weights(self.datasets, weights)
        self.seed = seed
        if samples_per_epoch is not None and (isinstance(samples_per_epoch, bool)
                                              or not isinstance(samples_per_epoch, int)
                                              or samples_per_epoch < 0):  # fmt: skip
            raise ReaderError(f"samples_per_epoch={samples_per_epoch!r}: give a number of samples "
                              "per rank (an int >= 0), or None for the sum of the sources' len()")  # fmt: skip
        self.samples_per_epoch = samples_per_epoch
        self._cumulative = list(itertools.accumulate(self.weights))
        self._epoch = SharedEpoch(0)  # shared with DataLoader workers, persistent ones too
        self._base: Optional[dict[str, Any]] = None  # a loaded state not yet used
        self._loads_seen = 0
        self._position: Optional[dict[str, int]] = None  # epoch, worker, num_workers, count

    def __repr__(self) -> str:
        rank, world = self.world()
        return (f"MixedDataset({len(self.datasets)} sources, weights={self.weights}, "
                f"len={len(self)}, rank={rank}/{world}, epoch={self.epoch})")  # fmt: skip

    def __len__(self) -> int:
        """Samples this rank yields per epoch (the same on every rank)."""
        self.world()  # the sources must agree on the rank
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        return sum(len(ds) for ds in self.datasets)

    def world(self) -> tuple[int, int]:
        """``(rank, world_size)`` of the sources, which must all agree."""
        worlds = {ds.world() for ds in self.datasets}
        if len(worlds) != 1:
            raise ReaderError(f"the sources of a MixedDataset are on different ranks: {sorted(worlds)}; "
                              "give every ShardDataset the same rank= and world_size=")  # fmt: skip
        return worlds.pop()

    # -- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self.iter_part(*_worker_info())

    def iter_part(self, worker: int, parts: int) -> Iterator[Any]:
        """Iterate as DataLoader worker ``worker`` of ``parts`` would."""
        parts = max(1, parts)
        if not 0 <= worker < parts:
            raise ReaderError(f"part {worker} is not in 0..{parts - 1}")
        if self._epoch.loads != self._loads_seen:
            return _raise(ReaderError(_MISSED_STATE))
        rank = self.world()[0]
        epoch = self.epoch
        worker, start = self._take_base(worker, parts)
        first, length = split_span(len(self), worker, parts)
        schedule = self._schedule(epoch, rank, 0, first + length)
        drawn = [0] * len(self.datasets)  # samples of each source before this worker's next
        for source in itertools.islice(schedule, first + start):
            drawn[source] += 1
        streams = [self._source_stream(i, epoch, rank, drawn[i]) for i in range(len(self.datasets))]
        self._position = {"epoch": epoch, "worker": worker, "num_workers": parts, "count": start}
        return self._generate(schedule, streams, self._position)

    def _schedule(self, epoch: int, rank: int, first: int, length: int) -> Iterator[int]:
        """The source index of positions ``first..first+length-1`` of this rank's epoch."""
        block, skip = divmod(first, BLOCK)
        left = length
        while left > 0:
            rng = make_rng("mix", self.seed, epoch, rank, block)
            draws = rng.choices(range(len(self.weights)), cum_weights=self._cumulative, k=BLOCK)
            chunk = draws[skip : skip + left]
            yield from chunk
            left -= len(chunk)
            block, skip = block + 1, 0

    def _generate(self, schedule: Iterator[int], streams: list[Iterator[Any]],
                  position: dict[str, int]) -> Iterator[Any]:  # fmt: skip
        for source in schedule:
            sample = next(streams[source])
            if not isinstance(sample, MutableMapping):
                raise ReaderError(f"source {source}'s samples are {type(sample).__name__}, not dicts: "
                                  "MixedDataset adds `dataset` to each sample, so a transform "
                                  "must return a dict")  # fmt: skip
            sample["dataset"] = source
            position["count"] += 1
            yield sample

    def _source_stream(self, index: int, epoch: int, rank: int, drawn: int) -> Iterator[Any]:
        """Source ``index``'s samples of this rank's epoch from its ``drawn``-th on: passes
        over the source's part for this rank, each in a new source epoch (the same for every
        DataLoader worker, which reads its own stretch). A source read with shuffle=False
        starts each pass at a seeded point of its order instead, wrapping around (a shuffled
        one needs no such turn: a new source epoch is a new order)."""
        view = _private_view(self.datasets[index])
        size = len(view)
        if size == 0:
            return
        passes, place = divmod(drawn, size)
        for number in itertools.count(passes):
            source_epoch = pass_epoch(self.seed, epoch, index, number)
            turn = 0 if view.shuffle else make_rng("turn", self.seed, epoch, index, number, rank).randrange(size)
            if place < size - turn:  # the pass from `turn` to the end of the rank's part
                yield from _read_part(view, source_epoch, turn + place, size - turn - place)
                place = size - turn
            begin = place - (size - turn)  # then from the part's start up to `turn`
            yield from _read_part(view, source_epoch, begin, turn - begin)
            place = 0

    # -- state -------------------------------------------------------------------------

    def state_after(self, steps: int, loader: Any) -> dict[str, Any]:
        """The state after ``steps`` batches of a plain torch DataLoader (in_order=True)."""
        if not getattr(loader, "in_order", True):
            raise ReaderError("state_after needs a DataLoader with in_order=True")
        parts = max(1, int(loader.num_workers))
        lengths = [split_span(len(self), k, parts)[1] for k in range(parts)]
        start = [0] * parts
        if self._base is not None and self._base["num_workers"] in (None, parts):
            start = [int(self._base["consumed"].get(str(k), 0)) for k in range(parts)]
        rotation = int(self._base.get("rotation", 0)) if self._base is not None else 0
        counts, turn = loader_counts(lengths, start, steps, batch_size=loader.batch_size,
                                     drop_last=bool(loader.drop_last), first=rotation)  # fmt: skip
        return self._state(self.epoch, parts, {str(k): c for k, c in enumerate(counts)}, rotation=turn)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the saved epoch with exactly the samples not yet yielded."""
        self._load(state, MIXED_STATE_FORMAT, ("seed", "weights", "samples", "world_size", "sources"))

    def _state(self, epoch: int, num_workers: Optional[int], consumed: dict[str, int], *,
               rotation: int = 0) -> dict[str, Any]:  # fmt: skip
        rank, world = self.world()
        return {
            "format": MIXED_STATE_FORMAT, "epoch": epoch, "seed": self.seed,
            "weights": list(self.weights), "samples": len(self), "world_size": world, "rank": rank,
            "sources": [{key: getattr(ds, key) for key in _SOURCE_PLAN} for ds in self.datasets],
            "num_workers": num_workers, "consumed": consumed, "rotation": rotation,
            "stats": [ds.stats.to_json() for ds in self.datasets],
        }  # fmt: skip


def pass_epoch(seed: int, epoch: int, source: int, number: int) -> int:
    """The source epoch of pass ``number`` over ``source`` in ``epoch`` (the same on every
    rank and worker, so together they read each pass as one partition of the source)."""
    return make_rng("pass", seed, epoch, source, number).getrandbits(63)


def _read_part(view: ShardDataset, epoch: int, start: int, count: int) -> Iterator[Any]:
    """``count`` samples of ``view``'s part for this rank in ``epoch``'s order, from its
    ``start``-th (read in this process, as with ``num_workers=0``: a DataLoader worker
    reads only the stretch its positions draw)."""
    if count <= 0:
        return iter(())
    state = view.state_dict()
    state.update(epoch=epoch, num_workers=1, consumed={"0": start}, rotation=0)
    view.load_state_dict(state)
    return itertools.islice(view.iter_part(0, 1), count)


def _private_view(source: ShardDataset) -> ShardDataset:
    """A copy of ``source`` with its own epoch and position (so that reading a pass never
    touches the user's dataset), sharing its shard list, location, transform and stats."""
    memo = {id(source.shards): source.shards, id(source.location): source.location,
            id(source.transform): source.transform, id(source.stats): source.stats}  # fmt: skip
    return copy.deepcopy(source, memo)


def _check_weights(datasets: list[ShardDataset], weights: Sequence[float]) -> list[float]:
    if not datasets:
        raise ReaderError("MixedDataset needs at least one dataset")
    for index, ds in enumerate(datasets):
        if not isinstance(ds, ShardDataset):
            raise ReaderError(f"datasets[{index}] is a {type(ds).__name__}, not a shardify.ShardDataset")
    values = list(weights)
    if len(values) != len(datasets):
        raise ReaderError(f"{len(datasets)} datasets but {len(values)} weights: give one weight per dataset")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ReaderError(f"weights[{index}]={value!r}: a weight is a finite number >= 0")
        if value > 0 and len(datasets[index]) == 0:
            raise ReaderError(f"datasets[{index}] has no samples for this rank but weight {value}")
    if sum(values) <= 0:
        raise ReaderError("the weights add up to 0: at least one must be positive")
    return [float(v) for v in values]
