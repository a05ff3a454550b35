"""Exact mid-epoch resume: the rest of the epoch after a restore equals the uninterrupted tail.

Covers the three ways of driving the reader: iterating it directly (``num_workers=0``),
torchdata's ``StatefulDataLoader`` with workers, and a plain ``DataLoader`` with workers
(``ds.state_after(steps, loader)``). The restore happens in a new process.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from shardify import ShardDataset
from tests.conftest import REPO
from tests.fixtures.reader import SAMPLES, ReaderBuild

pytestmark = pytest.mark.torch

OPTIONS: dict[str, Any] = {"seed": 7, "shuffle_buffer": 5, "decode_images": False}
MODES = ("direct", "stateful", "plain")
STOP_AFTER = {"direct": 7, "stateful": 3, "plain": 1}
"""Samples (direct) or batches of 3 (loaders) taken before the state is saved."""


def _keys(sample: dict[str, Any]) -> str:
    return str(sample["key"])


def _dataset(out: str, **kwargs: Any) -> ShardDataset:
    ds = ShardDataset(out, transform=_keys, rank=1, world_size=2, **OPTIONS, **kwargs)
    ds.set_epoch(2)
    return ds


def _loader(mode: str, ds: ShardDataset) -> Any:
    from torch.utils.data import DataLoader
    from torchdata.stateful_dataloader import StatefulDataLoader

    cls = StatefulDataLoader if mode == "stateful" else DataLoader
    return cls(ds, batch_size=3, num_workers=2, collate_fn=list)


def _flatten(batches: Iterator[Any]) -> list[str]:
    return [key for batch in batches for key in (batch if isinstance(batch, list) else [batch])]


def run_first(mode: str, out: str, state_path: Path) -> dict[str, Any]:
    """An uninterrupted epoch, then a fresh one stopped early with its state saved."""
    ds = _dataset(out)
    if mode == "direct":
        full = list(ds)
        ds = _dataset(out)
        it = iter(ds)
        seen = [next(it) for _ in range(STOP_AFTER[mode])]
        state: Any = ds.state_dict()
    else:
        full = _flatten(iter(_loader(mode, ds)))
        loader = _loader(mode, ds)
        it = iter(loader)
        batches = [next(it) for _ in range(STOP_AFTER[mode])]
        seen = _flatten(iter(batches))
        state = loader.state_dict() if mode == "stateful" else ds.state_after(len(batches), loader)
        del it
    state_path.write_bytes(pickle.dumps(state))
    return {"full": full, "seen": seen}


def run_rest(mode: str, out: str, state_path: Path) -> list[str]:
    """A new reader (and loader) restored from the saved state: the rest of the epoch."""
    state = pickle.loads(state_path.read_bytes())
    ds = _dataset(out)
    if mode == "stateful":
        loader = _loader(mode, ds)
        loader.load_state_dict(state)
        return _flatten(iter(loader))
    ds.load_state_dict(json.loads(json.dumps(state)))  # the reader's own state is JSON
    ds.set_epoch(2)  # what a training loop does at the start of the resumed epoch
    return list(ds) if mode == "direct" else _flatten(iter(_loader(mode, ds)))


def _child(step: str, out: Path, work: Path) -> dict[str, Any]:
    code = ("import json, sys; from pathlib import Path; import tests.test_reader_resume as m; "
            f"print(json.dumps({{mode: m.run_{step}(mode, {str(out)!r}, Path({str(work)!r}) / mode) "
            f"for mode in m.MODES}}))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_resume_in_a_new_process_continues_exactly(reader_build: ReaderBuild, tmp_path: Path) -> None:
    first = _child("first", reader_build.out, tmp_path)
    rest = _child("rest", reader_build.out, tmp_path)
    for mode in MODES:
        full, seen = first[mode]["full"], first[mode]["seen"]
        assert len(full) == SAMPLES // 2
        assert seen == full[: len(seen)], mode
        assert rest[mode] == full[len(seen) :], mode
        assert 0 < len(seen) < len(full)


@pytest.mark.parametrize("stop", [0, 1, 4, 9, 10])
def test_resume_at_every_point_of_an_epoch(reader_build: ReaderBuild, stop: int) -> None:
    full = list(_dataset(str(reader_build.out)))
    ds = _dataset(str(reader_build.out))
    it = iter(ds)
    head = [next(it) for _ in range(stop)]
    restored = _dataset(str(reader_build.out))
    restored.load_state_dict(ds.state_dict())
    assert head + list(restored) == full
    restored.set_epoch(3)  # the next epoch starts from its beginning
    assert len(list(restored)) == len(full)


def test_state_must_match_the_reader(reader_build: ReaderBuild) -> None:
    from shardify import ReaderError

    state = _dataset(str(reader_build.out)).state_dict()
    with pytest.raises(ReaderError, match="seed"):
        ShardDataset(str(reader_build.out), seed=8, rank=1, world_size=2).load_state_dict(state)
    with pytest.raises(ReaderError, match="world_size"):
        ShardDataset(str(reader_build.out), **OPTIONS).load_state_dict(state)
    ds = _dataset(str(reader_build.out))
    state["num_workers"], state["consumed"] = 2, {"0": 1, "1": 1}
    ds.load_state_dict(state)
    with pytest.raises(ReaderError, match="2 DataLoader worker"):
        list(ds)


def test_plain_loader_counts_match_torch(reader_build: ReaderBuild) -> None:
    """state_after's model of DataLoader's round-robin agrees with torch for odd splits."""
    from torch.utils.data import DataLoader

    for batch_size, drop_last in ((3, False), (4, True), (None, False)):
        ds = _dataset(str(reader_build.out))
        loader = DataLoader(ds, batch_size=batch_size, num_workers=2, drop_last=drop_last,
                            collate_fn=list if batch_size else None)  # fmt: skip
        batches = list(loader)
        for steps in range(len(batches) + 1):
            restored = _dataset(str(reader_build.out))
            restored.load_state_dict(ds.state_after(steps, loader))
            rest = list(DataLoader(restored, batch_size=batch_size, num_workers=2,
                                   drop_last=drop_last, collate_fn=list if batch_size else None))  # fmt: skip
            assert rest == batches[steps:], (batch_size, steps)


def test_a_loaded_state_saved_again_before_iterating_keeps_the_worker_turn(reader_build: ReaderBuild) -> None:
    """A checkpoint taken right after a resume (before any batch) must resume the same way:
    after an odd number of batches the next batch is the second worker's, and that turn is
    part of the state."""
    from torch.utils.data import DataLoader

    def loader(ds: ShardDataset) -> DataLoader:
        return DataLoader(ds, batch_size=3, num_workers=2, collate_fn=list)

    ds = _dataset(str(reader_build.out))
    batches = list(loader(ds))
    state = ds.state_after(1, loader(ds))
    assert state["rotation"] == 1
    restored = _dataset(str(reader_build.out))
    restored.load_state_dict(state)
    relayed = _dataset(str(reader_build.out))
    relayed.load_state_dict(json.loads(json.dumps(restored.state_dict())))
    assert list(loader(relayed)) == batches[1:]


@pytest.mark.slow
def test_tiny_training_loop_with_two_workers(reader_build: ReaderBuild) -> None:
    """A toy model trained for two epochs from DataLoader(num_workers=2) over the shards."""
    import torch
    from torch.utils.data import DataLoader

    ds = ShardDataset(str(reader_build.out), seed=1, shuffle_buffer=4, transform=_features)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    orders = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        keys: list[str] = []
        for batch in loader:
            loss = torch.nn.functional.mse_loss(model(batch["x"]).squeeze(1), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss)
            keys.extend(batch["key"])
        assert sorted(keys) == [f"{i:09d}" for i in range(SAMPLES)]
        orders.append(keys)
    assert orders[0] != orders[1]
    assert not torch.equal(before, model.weight.detach())


def _features(sample: dict[str, Any]) -> dict[str, Any]:
    """Tensors a model can eat: mean RGB of the first picture and the picture count."""
    import torch

    images = sample["images"]
    mean = [sum(c) / len(c) / 255 for c in zip(*images[0].resize((4, 4)).getdata())] if images else [0.0] * 3
    x = torch.tensor([*mean, len(images) / 8], dtype=torch.float32)
    return {"key": sample["key"], "x": x, "y": torch.tensor(float(len(images) > 2))}


def test_a_resume_that_skips_a_shards_last_samples_reports_no_corruption(reader_build: ReaderBuild) -> None:
    """Resuming with a shuffle buffer leaves a shard's last samples unwanted (already
    delivered): the shard is whole, so no corrupt shard is counted and nothing is skipped."""
    out = str(reader_build.out)
    first = ShardDataset(out, shuffle=True, seed=3, shuffle_buffer=4, decode_images=False)
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    resumed = ShardDataset(out, shuffle=True, seed=3, shuffle_buffer=4, decode_images=False)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == SAMPLES - 5
    assert resumed.stats.corrupt_shards == 0 and resumed.stats.skipped_samples == 0
