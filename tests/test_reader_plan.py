"""Properties of the reader's pure planning: spans partition the stream, orders permute."""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shardify.reader.plan import (
    ShardEntry,
    buffer_order,
    loader_counts,
    make_rng,
    rank_length,
    shard_order,
    stream_segments,
    worker_lengths,
    worker_span,
)

sizes = st.lists(st.integers(0, 9), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@example([1], 5, 2, False, 0)  # fewer samples than ranks: every rank still yields one
@given(sizes, st.integers(1, 5), st.integers(1, 3), st.booleans(), st.integers(0, 3))
def test_rank_and_worker_spans_cover_the_epoch(shard_sizes: list[int], world: int, workers: int,
                                               drop_last: bool, epoch: int) -> None:  # fmt: skip
    shards = [ShardEntry(f"s{i}", n) for i, n in enumerate(shard_sizes)]
    total = sum(shard_sizes)
    order = shard_order(shards, seed=1, epoch=epoch, shuffle=True)
    stream = [(s.name, i) for s in order for i in range(s.samples)]
    seen: Counter[tuple[str, int]] = Counter()
    for rank in range(world):
        taken = 0
        for worker in range(workers):
            start, length = worker_span(total, rank, world, worker, workers, drop_last=drop_last)
            for seg in stream_segments(order, start, length):
                assert 0 <= seg.first <= seg.stop <= seg.shard.samples
                for i in range(seg.first, seg.stop):
                    assert stream[(start + seg.offset + i - seg.first) % total] == (seg.shard.name, i)
                    seen[(seg.shard.name, i)] += 1
                    taken += 1
        assert taken == rank_length(total, world, drop_last=drop_last)
    if total % world == 0 or not drop_last:
        assert set(seen) == set(stream)  # every sample at least once
    per_rank = rank_length(total, world, drop_last=drop_last)
    assert max(seen.values(), default=1) <= max(1, -(-per_rank * world // max(total, 1)))
    assert sum(worker_lengths(total, world, workers, drop_last=drop_last)) == rank_length(
        total, world, drop_last=drop_last)


@given(st.integers(0, 300), st.integers(0, 50), st.integers(0, 10))
def test_buffer_order_is_a_bounded_permutation(length: int, buffer: int, seed: int) -> None:
    order = buffer_order(length, buffer, make_rng(seed))
    assert sorted(order) == list(range(length))
    assert order == buffer_order(length, buffer, make_rng(seed))
    for emitted, index in enumerate(order):  # never further ahead than the buffer reaches
        assert index < emitted + max(buffer, 1)


def test_shard_order_depends_on_seed_and_epoch_only() -> None:
    shards = [ShardEntry(f"s{i}", 1) for i in range(20)]
    assert shard_order(shards, seed=0, epoch=1, shuffle=True) == shard_order(shards, seed=0, epoch=1, shuffle=True)
    assert shard_order(shards, seed=0, epoch=1, shuffle=True) != shard_order(shards, seed=0, epoch=2, shuffle=True)
    assert shard_order(shards, seed=0, epoch=1, shuffle=False) == shards


@given(st.lists(st.integers(0, 12), min_size=1, max_size=4), st.integers(1, 5), st.booleans(),
       st.integers(0, 30))  # fmt: skip
def test_loader_counts_never_exceed_lengths(lengths: list[int], batch: int, drop_last: bool, steps: int) -> None:
    counts, turn = loader_counts(lengths, [0] * len(lengths), steps, batch_size=batch, drop_last=drop_last)
    assert all(0 <= c <= n for c, n in zip(counts, lengths))
    assert 0 <= turn < len(lengths)
    full, _ = loader_counts(lengths, [0] * len(lengths), 10**6, batch_size=batch, drop_last=drop_last)
    assert full == ([n - n % batch for n in lengths] if drop_last else lengths)
