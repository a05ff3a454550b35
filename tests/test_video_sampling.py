"""Pure logic of video frame selection: the loader's index formulas and the decode plan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shardify.media.video import frame_suffix, sample_indices
from shardify.media.video_decode import (
    WINDOW_ABOVE,
    WINDOW_BELOW,
    PacketTable,
    RankIndex,
    candidate_indices,
    plan_seeks,
    rank_index,
    should_seek,
)

totals = st.integers(min_value=1, max_value=100_000)
counts = st.integers(min_value=1, max_value=512)


@given(totals, counts)
@example(1, 1)
@example(1, 8)
@example(5, 8)
@example(8, 8)
@example(9, 8)
@example(10**9, 7)
def test_aria_indices_are_floor_t_over_n_times_i(total: int, n: int) -> None:
    indices = sample_indices(total, n, "aria")
    assert indices == [(total // n) * i for i in range(n)]
    assert len(indices) == n and all(0 <= i < total for i in indices)
    if n > total:
        assert set(indices) == {0}


@given(totals, counts)
@example(1, 1)
@example(1, 8)
@example(2, 3)
@example(4, 3)
@example(100_000, 512)
def test_uniform_indices_match_numpy_round_linspace(total: int, n: int) -> None:
    expected = np.round(np.linspace(0, total - 1, n)).astype(int).tolist()
    assert sample_indices(total, n, "uniform") == expected


@given(totals, counts)
def test_uniform_spans_first_to_last_frame_in_order(total: int, n: int) -> None:
    indices = sample_indices(total, n, "uniform")
    assert indices[0] == 0 and indices == sorted(indices)
    assert indices[-1] == (total - 1 if n > 1 else 0)


@pytest.mark.parametrize("bad", [(0, 8), (8, 0), (-1, 1)])
def test_sample_indices_refuses_empty_inputs(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        sample_indices(*bad)


def test_frame_suffix_has_no_dots_before_the_extension() -> None:
    assert frame_suffix(7) == "frame0007.jpg"
    assert frame_suffix(255).count(".") == 1


@given(st.integers(min_value=1, max_value=5000), counts, st.sampled_from(["aria", "uniform"]))
def test_candidates_cover_every_t_in_the_window(estimate: int, n: int, sampling: str) -> None:
    keep = candidate_indices(estimate, n, sampling)  # type: ignore[arg-type]
    for total in range(max(1, estimate - WINDOW_BELOW), estimate + WINDOW_ABOVE + 1):
        assert set(sample_indices(total, n, sampling)) <= keep  # type: ignore[arg-type]


def _gop_index(total: int, gop: int) -> RankIndex:
    """A closed-GOP stream without B-frames: decode order is presentation order."""
    return RankIndex(
        sorted_pts=list(range(total)),
        decode_pos=list(range(total)),
        entry=[(r // gop) * gop for r in range(total)],
    )


@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=1, max_value=300), counts)
def test_plan_reaches_every_target_from_a_keyframe_before_it(total: int, gop: int, n: int) -> None:
    index = _gop_index(total, gop)
    targets = sorted(set(sample_indices(total, n)) | {total - 1})
    plan, cost = plan_seeks(index, targets)
    assert [rank for rank, _ in plan] == targets
    assert plan[0][1] is not None  # decoding starts somewhere
    for rank, seek_to in plan:
        if seek_to is not None:
            assert seek_to == index.entry[rank] and seek_to <= rank
    assert cost <= total + len(plan) * 5


def test_sparse_targets_in_a_keyframe_rich_stream_seek() -> None:
    index = _gop_index(900, 30)
    plan = should_seek(index, sample_indices(900, 8))
    assert plan is not None
    assert sum(1 for _, seek_to in plan if seek_to) >= 7


@pytest.mark.parametrize(
    "total, gop, n",
    [(900, 900, 8), (300, 30, 64), (30, 1, 8), (24, 1, 8)],
    ids=["one-keyframe", "dense-targets", "all-keyframes-close-targets", "short"],
)
def test_dense_targets_or_rare_keyframes_decode_in_one_run(total: int, gop: int, n: int) -> None:
    assert should_seek(_gop_index(total, gop), sample_indices(total, n)) is None


def _table(
    pts: list[int | None], keys: list[bool], discard: list[bool] | None = None
) -> PacketTable:
    return PacketTable(packets=[object()] * len(pts), pts=pts, keyframe=keys,
                       discard=discard or [False] * len(pts))  # fmt: skip


def test_rank_index_maps_reordered_pts_and_leading_pictures() -> None:
    # decode order I0 P3 B1 B2 | I6 B4 B5 P9 B7 B8 (open GOP: B4, B5 lead I6)
    pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
    keys = [True, False, False, False, True, False, False, False, False, False]
    index = rank_index(_table(pts, keys), header_frames=10, format_name="mov,mp4")
    assert index is not None
    assert index.sorted_pts == list(range(10))
    assert index.decode_pos[3] == 1 and index.decode_pos[9] == 7
    assert index.entry[4] == 0 and index.entry[5] == 0  # leading pictures need the GOP before
    assert index.entry[6] == 4 and index.entry[8] == 4


def test_rank_index_leaves_out_discarded_packets() -> None:
    index = rank_index(_table([0, 1, 2, 3], [True] * 4, [True, False, False, False]), 4, "mov")
    assert index is not None and index.sorted_pts == [1, 2, 3]


@pytest.mark.parametrize(
    "pts, keys, header, fmt",
    [
        ([0, 1, 2], [False, True, False], 3, "mov"),  # no keyframe first
        ([0, None, 2], [True, False, False], 3, "mov"),  # a packet without pts
        ([0, 1, 1], [True, False, False], 3, "mov"),  # duplicate pts
        ([0, 1, 2], [True, False, False], 5, "mov"),  # the container's index disagrees
        ([0, 1, 2], [True, False, False], 3, "avi"),  # decode-order stamps
    ],
)
def test_rank_index_refuses_untrustworthy_tables(
    pts: list[int | None], keys: list[bool], header: int, fmt: str
) -> None:
    assert rank_index(_table(pts, keys), header_frames=header, format_name=fmt) is None
