"""``MixedDataset`` (issue 14): weighted mixing of ShardDatasets, equal ranks, exact resume.

Two small text-only builds (fast to read): ``big`` (30 samples, shards of 7) and ``small``
(8 samples, shards of 3). The expected order under DataLoader workers is computed in this
process from ``iter_part`` (``loader_order``) and compared with torch's.
"""

from __future__ import annotations

import collections
import json
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from shardify import MixedDataset, ReaderError, ShardDataset
from shardify.datagen import DatasetSpec, make_dataset
from tests.conftest import REPO
from tests.fixtures.reader import ReaderBuild, build_output, loader_order

pytestmark = pytest.mark.torch

BIG, SMALL = 30, 8
BATCH = 3


@dataclass(frozen=True)
class Sources:
    big: str
    small: str


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    base = tmp_path_factory.mktemp("mixed")
    for name, count, shard in (("big", BIG, 7), ("small", SMALL, 3)):
        root = make_dataset(base / name, DatasetSpec(image_samples=0, video_samples=0, text_samples=count))
        build_output(root, base / f"{name}_out", max_samples=shard)
    return Sources(big=str(base / "big_out"), small=str(base / "small_out"))


def key_only(sample: dict[str, Any]) -> dict[str, Any]:
    """A transform keeping what the tests compare (a dict: MixedDataset adds ``dataset``)."""
    return {"key": sample["key"]}


def mixed(src: Sources, weights: Any = (1, 1), *, seed: int = 0, samples: Any = None,
          big_options: Any = None, **options: Any) -> MixedDataset:  # fmt: skip
    common = {"transform": key_only, "decode_images": False, "shuffle_buffer": 4, **options}
    big = ShardDataset(src.big, seed=1, **{**common, **(big_options or {})})
    small = ShardDataset(src.small, seed=2, **common)
    return MixedDataset([big, small], list(weights), seed=seed, samples_per_epoch=samples)


def pairs(samples: Any) -> list[tuple[int, str]]:
    return [(int(s["dataset"]), str(s["key"])) for s in samples]


def epoch_of(ds: MixedDataset, epoch: int) -> list[tuple[int, str]]:
    ds.set_epoch(epoch)
    return pairs(ds)


def test_proportions_follow_the_weights(sources: Sources) -> None:
    draws = 4000
    counts = collections.Counter(d for d, _ in pairs(mixed(sources, (3, 1), samples=draws)))
    noise = (draws * 0.75 * 0.25) ** 0.5  # binomial standard deviation, about 27
    assert sum(counts.values()) == draws
    assert abs(counts[0] - 0.75 * draws) < 5 * noise, counts
    only_big = collections.Counter(d for d, _ in pairs(mixed(sources, (1, 0), samples=50)))
    assert only_big == {0: 50}


def test_order_is_fixed_by_seed_and_epoch(sources: Sources) -> None:
    first = epoch_of(mixed(sources, seed=4), 3)
    assert epoch_of(mixed(sources, seed=4), 3) == first
    assert epoch_of(mixed(sources, seed=4), 4) != first
    assert epoch_of(mixed(sources, seed=5), 3) != first
    sequence = [d for d, _ in first]  # the mix itself, not only each source's order, changes
    assert [d for d, _ in epoch_of(mixed(sources, seed=4), 4)] != sequence
    assert [d for d, _ in epoch_of(mixed(sources, seed=5), 3)] != sequence
    ds = mixed(sources, seed=4)
    assert [epoch_of(ds, e) for e in (3, 4, 3)] == [first, epoch_of(mixed(sources, seed=4), 4), first]


def test_samples_carry_their_source_index(reader_build: ReaderBuild, sources: Sources) -> None:
    """Real decoded samples (images, messages) keep their fields and gain ``dataset``."""
    rich = ShardDataset(str(reader_build.out), seed=0)
    text = ShardDataset(sources.small, seed=0)
    ds = MixedDataset([text, rich], [1, 1], seed=9, samples_per_epoch=24)
    keys_of = [{s["key"] for s in ShardDataset(url, shuffle=False, decode_images=False)}
               for url in (sources.small, str(reader_build.out))]  # fmt: skip
    samples = list(ds)
    assert len(samples) == len(ds) == 24
    assert {s["dataset"] for s in samples} == {0, 1}
    for sample in samples:
        assert sample["key"] in keys_of[sample["dataset"]]
        assert isinstance(sample["messages"], list) and isinstance(sample["images"], list)
    assert any(s["images"] for s in samples if s["dataset"] == 1)


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_yields_len_samples(sources: Sources, world: int) -> None:
    ranks = [mixed(sources, rank=r, world_size=world) for r in range(world)]
    expected = -(-BIG // world) + -(-SMALL // world)  # the sum of the sources' len()
    assert {len(ds) for ds in ranks} == {expected}
    for ds in ranks:
        assert len(list(ds)) == expected
        assert len(loader_order(ds, 2, BATCH)) == expected
    fixed = [mixed(sources, samples=7, rank=r, world_size=world) for r in range(world)]
    assert [len(list(ds)) for ds in fixed] == [7] * world
    orders = [pairs(ds) for ds in ranks]
    assert len({tuple(o) for o in orders}) == world  # each rank has its own mix


def test_a_small_source_repeats_in_a_new_order(sources: Sources) -> None:
    small = [key for d, key in epoch_of(mixed(sources, (1, 3), samples=60), 0) if d == 1]
    assert len(small) > 3 * SMALL
    passes = [small[i : i + SMALL] for i in range(0, 3 * SMALL, SMALL)]
    for one in passes:  # every pass holds each sample once
        assert sorted(one) == sorted(set(small)) and len(set(small)) == SMALL
    assert len({tuple(p) for p in passes}) == 3  # each pass in its own order


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_large_source_is_subsampled_differently_each_epoch(sources: Sources, shuffle: bool) -> None:
    """Not always the same prefix, even for a source read with shuffle=False (then each epoch
    takes a run of the manifest order from a seeded start)."""
    ds = mixed(sources, (1, 0), samples=10, big_options={"shuffle": shuffle})
    taken = [[key for _, key in epoch_of(ds, e)] for e in range(4)]
    assert len({frozenset(keys) for keys in taken}) == 4
    for keys in taken:
        assert len(set(keys)) == 10
        if not shuffle:  # consecutive lines, wrapping around the end
            lines = [int(k) for k in keys]
            assert all((b - a) % BIG == 1 for a, b in zip(lines, lines[1:]))


def test_workers_yield_the_same_samples_as_no_workers(sources: Sources) -> None:
    ds = mixed(sources, (2, 1), samples=37)
    alone = epoch_of(ds, 1)
    for parts in (2, 3, 5):
        model = pairs(loader_order(ds, parts, BATCH))
        assert sorted(model) == sorted(alone), parts


def _loader(ds: MixedDataset, context: str, *, persistent: bool = True, stateful: bool = False) -> Any:
    from torch.utils.data import DataLoader

    cls: Any = DataLoader
    if stateful:
        from torchdata.stateful_dataloader import StatefulDataLoader

        cls = StatefulDataLoader
    return cls(ds, batch_size=BATCH, num_workers=2, collate_fn=list, multiprocessing_context=context,
               persistent_workers=persistent)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_fork_and_spawn(sources: Sources, context: str) -> None:
    """Two persistent workers: each epoch is the in-process model's order (set_epoch reaches
    them) and the same multiset as num_workers=0."""
    ds = mixed(sources, (2, 1), samples=31, seed=6)
    loader = _loader(ds, context)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        got = pairs(s for batch in loader for s in batch)
        assert got == pairs(loader_order(ds, 2, BATCH)), epoch
        assert sorted(got) == sorted(epoch_of(mixed(sources, (2, 1), samples=31, seed=6), epoch))
        seen.append(got)
    assert seen[0] != seen[1]


@pytest.mark.parametrize("stop", [0, 1, 9, 20, 41])
def test_resume_at_every_point_of_an_epoch(sources: Sources, stop: int) -> None:
    full = epoch_of(mixed(sources, (1, 2), samples=41), 2)
    ds = mixed(sources, (1, 2), samples=41)
    ds.set_epoch(2)
    it = iter(ds)
    head = pairs(next(it) for _ in range(stop))
    restored = mixed(sources, (1, 2), samples=41)
    restored.load_state_dict(json.loads(json.dumps(ds.state_dict())))
    assert restored.epoch == 2
    assert head + pairs(restored) == full
    assert len(list(restored)) == 41  # the next pass starts the epoch over


def test_plain_loader_state_after_continues_exactly(sources: Sources) -> None:
    from torch.utils.data import DataLoader

    ds = mixed(sources, (1, 1), samples=29)
    batches = [pairs(b) for b in DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list)]
    for steps in (1, 3, len(batches) - 1):
        restored = mixed(sources, (1, 1), samples=29)
        restored.load_state_dict(ds.state_after(steps, DataLoader(ds, batch_size=4, num_workers=2)))
        rest = [pairs(b) for b in DataLoader(restored, batch_size=4, num_workers=2, collate_fn=list)]
        assert rest == batches[steps:], steps


MODES = ("direct", "stateful", "plain")
STOP_AFTER = {"direct": 11, "stateful": 4, "plain": 3}


def _resume_dataset(out: dict[str, str]) -> MixedDataset:
    ds = mixed(Sources(**out), (2, 1), samples=33, seed=3, rank=1, world_size=2)
    ds.set_epoch(5)
    return ds


def _flat(batches: Iterator[Any]) -> list[tuple[int, str]]:
    return [pair for batch in batches for pair in pairs(batch)]


def run_first(mode: str, out: dict[str, str], state_path: Path) -> dict[str, Any]:
    """(In a child process) an uninterrupted epoch, then one stopped early, its state saved."""
    ds = _resume_dataset(out)
    if mode == "direct":
        full = pairs(ds)
        ds = _resume_dataset(out)
        it: Any = iter(ds)
        seen = pairs(next(it) for _ in range(STOP_AFTER[mode]))
        state: Any = ds.state_dict()
    else:
        full = _flat(iter(_loader(ds, "fork", persistent=False, stateful=mode == "stateful")))
        loader = _loader(ds, "fork", persistent=False, stateful=mode == "stateful")
        it = iter(loader)
        batches = [next(it) for _ in range(STOP_AFTER[mode])]
        seen = _flat(iter(batches))
        state = loader.state_dict() if mode == "stateful" else ds.state_after(len(batches), loader)
        del it
    state_path.write_bytes(pickle.dumps(state))
    return {"full": full, "seen": seen}


def run_rest(mode: str, out: dict[str, str], state_path: Path) -> list[tuple[int, str]]:
    """(In a new child process) a new reader restored from the saved state."""
    state = pickle.loads(state_path.read_bytes())
    ds = _resume_dataset(out)
    if mode == "stateful":
        loader = _loader(ds, "fork", persistent=False, stateful=True)
        loader.load_state_dict(state)
        return _flat(iter(loader))
    ds.load_state_dict(json.loads(json.dumps(state)))
    ds.set_epoch(5)  # what a training loop does at the start of the resumed epoch
    if mode == "direct":
        return pairs(ds)
    return _flat(iter(_loader(ds, "fork", persistent=False)))


def _child(step: str, out: dict[str, str], work: Path, modes: tuple[str, ...]) -> dict[str, Any]:
    code = ("import json, sys; from pathlib import Path; import tests.test_reader_mixed as m; "
            f"print(json.dumps({{mode: m.run_{step}(mode, {out!r}, Path({str(work)!r}) / mode) "
            f"for mode in {modes!r}}}))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_resume_in_a_new_process_continues_exactly(sources: Sources, tmp_path: Path) -> None:
    try:
        import torchdata.stateful_dataloader  # noqa: F401

        modes = MODES
    except ImportError:
        modes = ("direct", "plain")  # StatefulDataLoader's half needs torchdata
    out = {"big": sources.big, "small": sources.small}
    first = _child("first", out, tmp_path, modes)
    rest = _child("rest", out, tmp_path, modes)
    for mode in modes:
        full = [tuple(p) for p in first[mode]["full"]]
        seen = [tuple(p) for p in first[mode]["seen"]]
        assert len(full) == 33
        assert 0 < len(seen) < len(full)
        assert seen == full[: len(seen)], mode
        assert [tuple(p) for p in rest[mode]] == full[len(seen) :], mode
    if "stateful" not in modes:
        pytest.skip("torchdata is not installed: the StatefulDataLoader half did not run")


def test_state_must_match_the_reader(sources: Sources) -> None:
    state = mixed(sources, (1, 1)).state_dict()
    with pytest.raises(ReaderError, match="weights"):
        mixed(sources, (1, 2)).load_state_dict(state)
    with pytest.raises(ReaderError, match="sources"):
        mixed(sources, (1, 1), big_options={"shuffle_buffer": 9}).load_state_dict(state)
    with pytest.raises(ReaderError, match="shardify.mixed/1"):
        mixed(sources).load_state_dict(ShardDataset(sources.big).state_dict())
    ds = mixed(sources)
    state.update(num_workers=2, consumed={"0": 1, "1": 1})
    ds.load_state_dict(state)
    with pytest.raises(ReaderError, match="2 DataLoader worker"):
        list(ds)


def test_bad_arguments_are_refused(sources: Sources) -> None:
    big = ShardDataset(sources.big)
    for weights, match in (([1], "one weight per dataset"), ([1, -1], "finite number"),
                           ([0, 0], "add up to 0"), ([1, float("nan")], "finite number")):  # fmt: skip
        with pytest.raises(ReaderError, match=match):
            MixedDataset([big, ShardDataset(sources.small)], weights)
    with pytest.raises(ReaderError, match="samples_per_epoch"):
        MixedDataset([big], [1], samples_per_epoch=-1)
    with pytest.raises(ReaderError, match="different ranks"):
        len(MixedDataset([big, ShardDataset(sources.small, rank=0, world_size=2)], [1, 1]))
    with pytest.raises(ReaderError, match="must return a dict"):
        list(MixedDataset([ShardDataset(sources.small, transform=lambda s: s["key"])], [1]))


@pytest.mark.slow
def test_persistent_workers_resume_then_go_on_and_refuse_a_late_load(sources: Sources) -> None:
    """A state saved after 2 batches of epoch 1, loaded before the loader's first iter: the
    rest of epoch 1, then all of epoch 2; a state loaded after the workers started is refused."""
    def make() -> MixedDataset:
        return mixed(sources, (1, 1), samples=25, seed=8)

    saved = make()
    saved.set_epoch(1)
    state = saved.state_after(2, _loader(saved, "fork"))
    ds = make()
    ds.load_state_dict(state)
    loader = _loader(ds, "fork")
    runs = []
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        runs.append(pairs(s for batch in loader for s in batch))
    model = make()
    model.set_epoch(1)
    assert runs[0] == pairs(loader_order(model, 2, BATCH))[2 * BATCH :]
    model.set_epoch(2)
    assert runs[1] == pairs(loader_order(model, 2, BATCH))
    ds.load_state_dict(state)
    with pytest.raises(ReaderError, match="load the state before the first iter"):
        list(loader)
