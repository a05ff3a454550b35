"""Planning is pure: properties that hold for any sequence of lines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shardify.planning import LineInfo, ShardTask, plan_shards, shard_name

# A line: (length in bytes, weight or None for blank/rejected lines)
lines_strategy = st.lists(
    st.tuples(st.integers(1, 500), st.one_of(st.none(), st.integers(1, 5_000))), max_size=200
)


def to_lines(spec: list[tuple[int, int | None]]) -> list[LineInfo]:
    out, offset = [], 0
    for index, (length, weight) in enumerate(spec):
        out.append(LineInfo(index=index, offset=offset, length=length, weight=weight))
        offset += length
    return out


def plan(spec: list[tuple[int, int | None]], max_samples: int, target: int | None = None) -> list[ShardTask]:
    return list(plan_shards(to_lines(spec), split="train", file="train.jsonl",
                            max_samples=max_samples, target_bytes=target))


@settings(max_examples=300, deadline=None)
@given(lines_strategy, st.integers(1, 20), st.one_of(st.none(), st.integers(1, 20_000)))
def test_every_line_in_exactly_one_contiguous_shard(spec, max_samples, target) -> None:  # type: ignore[no-untyped-def]
    tasks = plan(spec, max_samples, target)
    if not spec:
        assert tasks == []
        return
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert tasks[0].first_line == 0 and tasks[0].start_byte == 0
    assert tasks[-1].end_line == len(spec)
    assert tasks[-1].end_byte == sum(length for length, _ in spec)
    for before, after in zip(tasks, tasks[1:]):
        assert before.end_line == after.first_line and before.end_byte == after.start_byte
    assert sum(t.candidates for t in tasks) == sum(1 for _, w in spec if w is not None)


@settings(max_examples=300, deadline=None)
@given(lines_strategy, st.integers(1, 20), st.one_of(st.none(), st.integers(1, 20_000)))
def test_shards_respect_max_samples_and_target_bytes(spec, max_samples, target) -> None:  # type: ignore[no-untyped-def]
    for task in plan(spec, max_samples, target):
        weights = [w for _, w in spec[task.first_line : task.end_line] if w is not None]
        assert len(weights) == task.candidates <= max_samples
        if target is not None and len(weights) > 1:
            assert sum(weights) <= target
    nonempty = [t for t in plan(spec, max_samples, target) if t.candidates]
    # Only the last shard (or a split without candidates) may be short without a reason.
    for task, following in zip(nonempty, nonempty[1:]):
        first_next = next(w for _, w in spec[following.first_line:] if w is not None)
        weights = [w for _, w in spec[task.first_line : task.end_line] if w is not None]
        full = len(weights) == max_samples
        assert full or (target is not None and sum(weights) + first_next > target)


@given(lines_strategy, st.integers(1, 20))
def test_plan_is_deterministic(spec, max_samples) -> None:  # type: ignore[no-untyped-def]
    assert plan(spec, max_samples) == plan(spec, max_samples)


def test_a_split_without_candidates_gets_one_shard() -> None:
    tasks = plan([(5, None), (7, None)], 10)
    assert len(tasks) == 1 and tasks[0].candidates == 0 and tasks[0].end_line == 2


def test_leading_and_trailing_rejects_ride_along() -> None:
    tasks = plan([(5, None), (5, 1), (5, 1), (5, None), (5, 1), (5, None)], 2)
    assert [(t.first_line, t.end_line, t.candidates) for t in tasks] == [(0, 4, 2), (4, 6, 1)]


@given(st.sampled_from(["train", "test", "val_2"]), st.integers(0, 999_999))
def test_shard_names_are_sequential_and_sortable(split: str, index: int) -> None:
    name = shard_name(split, index)
    assert name == f"{split}-{index:06d}.tar"
    assert name.count(".") == 1
    if index:
        assert shard_name(split, index - 1) < name


@settings(max_examples=300, deadline=None)
@given(lines_strategy, st.integers(1, 20), st.integers(1, 30))
def test_max_lines_bounds_every_shard(spec, max_samples, max_lines) -> None:  # type: ignore[no-untyped-def]
    tasks = list(plan_shards(to_lines(spec), split="train", file="train.jsonl",
                             max_samples=max_samples, max_lines=max_lines))
    assert all(1 <= t.end_line - t.first_line <= max_lines for t in tasks)
    assert sum(t.end_line - t.first_line for t in tasks) == len(spec)
    assert all(t.candidates <= max_samples for t in tasks)


def test_all_rejected_lines_are_split_by_max_lines() -> None:
    tasks = list(plan_shards(to_lines([(5, None)] * 25), split="train", file="train.jsonl",
                             max_samples=3, max_lines=10))
    assert [(t.first_line, t.end_line) for t in tasks] == [(0, 10), (10, 20), (20, 25)]
