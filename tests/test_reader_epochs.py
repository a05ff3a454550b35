"""``set_epoch`` reaches DataLoader workers, persistent ones included (issue 14).

Torch's persistent workers keep the dataset copy they were started with and call
``iter(dataset)`` again when the main process starts the next epoch (``iter(loader)``). The
epoch used to be a plain attribute of the main process's copy, so with
``persistent_workers=True`` every epoch after the first repeated epoch 0's order.

The expected order of an epoch is computed in this process from ``iter_part`` (each worker's
part, batched and taken round-robin); the non-persistent runs check that model against torch.
"""

from __future__ import annotations

import copy
import os
import pickle
from typing import Any, Iterable

import pytest

from shardify import ReaderError, ShardDataset
from tests.fixtures.reader import SAMPLES, ReaderBuild, loader_order

pytestmark = pytest.mark.torch

OPTIONS: dict[str, Any] = {"seed": 5, "shuffle_buffer": 4, "decode_images": False}
EPOCHS = 3
BATCH = 3
WORKERS = 2
ALL_KEYS = [f"{i:09d}" for i in range(SAMPLES)]


def _key(sample: dict[str, Any]) -> str:
    return str(sample["key"])


def _key_and_pid(sample: dict[str, Any]) -> tuple[str, int]:
    """The sample's key and the process that read it (tells persistent workers apart)."""
    return str(sample["key"]), os.getpid()


def _expected(build: ReaderBuild, epoch: int) -> list[str]:
    ds = ShardDataset(str(build.out), transform=_key, **OPTIONS)
    ds.set_epoch(epoch)
    return loader_order(ds, WORKERS, BATCH)


def _loader(ds: ShardDataset, context: str, persistent: bool, *, stateful: bool = False) -> Any:
    from torch.utils.data import DataLoader
    from torchdata.stateful_dataloader import StatefulDataLoader

    cls = StatefulDataLoader if stateful else DataLoader
    return cls(ds, batch_size=BATCH, num_workers=WORKERS, collate_fn=list,
               multiprocessing_context=context, persistent_workers=persistent)  # fmt: skip


Run = tuple[list[str], set[int]]
"""One epoch from a loader: the keys in order, the pids of the workers that read them."""


def _train(ds: ShardDataset, loader: Any, epochs: Iterable[int]) -> list[Run]:
    """A user's ordinary loop: ``set_epoch`` then the loader, for each epoch."""
    runs = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        items = [item for batch in loader for item in batch]
        runs.append(([key for key, _ in items], {pid for _, pid in items}))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_every_epoch_has_its_own_order_in_the_workers(reader_build: ReaderBuild, context: str) -> None:
    """Persistent workers give each epoch the order that workers restarted per epoch give."""
    runs: dict[bool, list[Run]] = {}
    for persistent in (False, True):
        ds = ShardDataset(str(reader_build.out), transform=_key_and_pid, **OPTIONS)
        runs[persistent] = _train(ds, _loader(ds, context, persistent), range(EPOCHS))
    for persistent, epochs in runs.items():
        orders = [keys for keys, _ in epochs]
        for epoch, keys in enumerate(orders):
            assert keys == runs[False][epoch][0], (persistent, epoch)
            assert keys == _expected(reader_build, epoch), (persistent, epoch)
            assert sorted(keys) == ALL_KEYS  # every sample exactly once
        assert len({tuple(keys) for keys in orders}) == EPOCHS
        pids = [workers for _, workers in epochs]
        assert all(len(p) == WORKERS and os.getpid() not in p for p in pids)
        if persistent:  # the same two workers served every epoch
            assert pids[0] == pids[1] == pids[2]
        else:
            assert not pids[0] & pids[1] and not pids[1] & pids[2]


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_resume_under_persistent_workers(reader_build: ReaderBuild, context: str) -> None:
    """A state saved after 2 batches of epoch 1: the rest of epoch 1, then all of epoch 2."""
    saved = ShardDataset(str(reader_build.out), **OPTIONS)
    saved.set_epoch(1)
    state = saved.state_after(2, _loader(saved, context, True))
    ds = ShardDataset(str(reader_build.out), transform=_key_and_pid, **OPTIONS)
    ds.load_state_dict(state)
    assert ds.epoch == 1
    (rest, pids1), (second, pids2) = _train(ds, _loader(ds, context, True), [1, 2])
    assert rest == _expected(reader_build, 1)[2 * BATCH :]
    assert second == _expected(reader_build, 2)
    assert pids1 == pids2


@pytest.mark.slow
def test_worker_states_carry_the_epoch_they_read(reader_build: ReaderBuild) -> None:
    """StatefulDataLoader collects each persistent worker's state: it must name epoch 2."""
    ds = ShardDataset(str(reader_build.out), transform=_key_and_pid, **OPTIONS)
    loader = _loader(ds, "fork", True, stateful=True)
    _train(ds, loader, [0, 1])
    ds.set_epoch(2)
    it = iter(loader)
    head = [key for _ in range(3) for key, _ in next(it)]
    state = loader.state_dict()
    del it
    epochs = [s["epoch"] for s in _reader_states(state)]
    assert epochs and set(epochs) == {2}
    restored = ShardDataset(str(reader_build.out), transform=_key_and_pid, **OPTIONS)
    again = _loader(restored, "fork", True, stateful=True)
    again.load_state_dict(state)  # each worker loads its part: the main's epoch is not touched
    (rest, _), (third, _) = _train(restored, again, [2, 3])
    assert head + rest == _expected(reader_build, 2)
    assert third == _expected(reader_build, 3)


@pytest.mark.slow
def test_a_state_loaded_after_persistent_workers_started_is_refused(reader_build: ReaderBuild) -> None:
    """Persistent workers hold copies from their start: a later load would be silently lost."""
    ds = ShardDataset(str(reader_build.out), transform=_key_and_pid, **OPTIONS)
    loader = _loader(ds, "fork", True)
    _train(ds, loader, [0])
    ds.load_state_dict(ds.state_after(2, loader))
    with pytest.raises(ReaderError, match="load the state before the first iter"):
        _train(ds, loader, [0])
    ((rest, _),) = _train(ds, _loader(ds, "fork", True), [0])  # a new DataLoader continues it
    assert rest == _expected(reader_build, 0)[2 * BATCH :]


def _reader_states(tree: Any) -> list[dict[str, Any]]:
    """Every ShardDataset state inside a StatefulDataLoader state."""
    if isinstance(tree, dict):
        if tree.get("format") == "shardify.reader/1":
            return [tree]
        return [s for value in tree.values() for s in _reader_states(value)]
    return []


def test_an_iteration_keeps_the_epoch_it_started_with(reader_build: ReaderBuild) -> None:
    ds = ShardDataset(str(reader_build.out), transform=_key, **OPTIONS)
    ds.set_epoch(1)
    one = list(ds)
    it = iter(ds)
    head = [next(it) for _ in range(4)]
    assert ds.state_dict()["epoch"] == 1 and ds.state_dict()["consumed"] == {"0": 4}
    ds.set_epoch(2)  # the next iteration's order; the running one goes on with epoch 1
    assert ds.state_dict()["epoch"] == 2 and ds.state_dict()["consumed"] == {}
    assert head + list(it) == one
    assert list(ds) != one and sorted(ds) == ALL_KEYS


def test_copies_outside_a_worker_start_are_independent(reader_build: ReaderBuild) -> None:
    """pickle and deepcopy (not a process start) copy the epoch instead of sharing it."""
    ds = ShardDataset(str(reader_build.out), transform=_key, **OPTIONS)
    ds.set_epoch(4)
    for other in (pickle.loads(pickle.dumps(ds)), copy.deepcopy(ds)):
        assert other.epoch == 4
        other.set_epoch(7)
        assert ds.epoch == 4 and other.epoch == 7
        fresh = ShardDataset(str(reader_build.out), transform=_key, **OPTIONS)
        fresh.set_epoch(7)
        assert list(other) == list(fresh)


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "1", True])
def test_set_epoch_takes_a_non_negative_int(reader_build: ReaderBuild, bad: Any) -> None:
    ds = ShardDataset(str(reader_build.out))
    with pytest.raises(ReaderError, match="epoch"):
        ds.set_epoch(bad)
    assert ds.epoch == 0
