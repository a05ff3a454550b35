"""Frame extraction on synthetic videos whose frames are identifiable by colour: the exact
frames the loader samples, the same bytes whether seeking or counting, failures and limits."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from shardify.errors import MediaError
from shardify.media import video_decode
from shardify.media.video import UNREADABLE_VIDEO, extract_video, sample_indices
from tests.fixtures.video import HEIGHT, WIDTH, frame_index_of


def shown_indices(video: Any, total: int) -> list[int]:
    by_suffix = dict(zip(dict.fromkeys(video.suffixes), video.frames))
    return [frame_index_of(by_suffix[s], total) for s in video.suffixes]


class Calls:
    """Counts calls of a video_decode function while still running it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.count = 0
        real = getattr(video_decode, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(video_decode, name, counted)


@pytest.mark.parametrize(
    "name, total", [("short", 30), ("bframes", 192), ("vp9", 120), ("mpeg4", 40)]
)
@pytest.mark.parametrize("sampling, n", [("aria", 8), ("uniform", 5), ("aria", 1), ("uniform", 64)])
def test_frames_are_the_ones_the_loader_samples(
    video_files: dict[str, Path], name: str, total: int, sampling: Any, n: int
) -> None:
    video = extract_video(str(video_files[name]), num_frames=n, sampling=sampling)
    expected = sample_indices(total, n, sampling)
    assert video.total_frames == total
    assert list(video.frame_indices) == expected
    assert shown_indices(video, total) == expected
    assert (video.width, video.height) == (WIDTH, HEIGHT)
    assert video.warning is None


@pytest.mark.parametrize("name", ["gop", "bframes", "vp9"])
def test_seeking_gives_the_same_bytes_as_decoding_everything(
    video_files: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(video_files[name])
    seeks = Calls(monkeypatch, "decode_seeking")
    counts = Calls(monkeypatch, "decode_counting")
    seeking = extract_video(path, num_frames=4)
    assert (seeks.count, counts.count) == (1, 0), "keyframe-rich + sparse frames should seek"
    monkeypatch.setattr(video_decode, "SEEK_MAX_SHARE", 0.0)
    counting = extract_video(path, num_frames=4)
    assert counts.count == 1
    assert seeking == counting
    assert shown_indices(seeking, seeking.total_frames) == list(seeking.frame_indices)


def test_seek_never_always_counts_and_gives_the_same_bytes(
    video_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(video_files["gop"])
    seeking = extract_video(path, num_frames=4)
    seeks = Calls(monkeypatch, "decode_seeking")
    counts = Calls(monkeypatch, "decode_counting")
    never = extract_video(path, num_frames=4, seek="never")
    assert (seeks.count, counts.count) == (0, 1)
    assert never == seeking


def test_a_lying_packet_table_falls_back_to_counting(
    video_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = video_decode.rank_index

    def off_by_one(*args: Any) -> Any:  # pretend one frame more than decodes
        index = real(*args)
        return video_decode.RankIndex(sorted_pts=index.sorted_pts + [10**9],
                                      decode_pos=index.decode_pos + [index.decode_pos[-1]],
                                      entry=index.entry + [index.entry[-1]])  # fmt: skip

    monkeypatch.setattr(video_decode, "rank_index", off_by_one)
    counts = Calls(monkeypatch, "decode_counting")
    video = extract_video(str(video_files["gop"]), num_frames=4)
    assert counts.count == 1
    assert video.total_frames == 240
    assert shown_indices(video, 240) == sample_indices(240, 4)


def test_more_frames_asked_than_exist_repeat_one_stored_frame(video_files: dict[str, Path]) -> None:
    video = extract_video(str(video_files["short"]), num_frames=40)
    assert list(video.frame_indices) == [0] * 40
    assert set(video.suffixes) == {"frame0000.jpg"} and len(video.frames) == 1
    uniform = extract_video(str(video_files["short"]), num_frames=40, sampling="uniform")
    assert len(uniform.frames) == len(set(uniform.frame_indices)) == 30
    assert len(set(uniform.suffixes)) == 30


def test_metadata_records_timestamps_and_size(video_files: dict[str, Path]) -> None:
    video = extract_video(str(video_files["bframes"]), num_frames=4, jpeg_quality=75)
    meta = video.metadata()
    assert meta["frame_indices"] == [0, 48, 96, 144]
    assert meta["timestamps"] == [0.0, 2.0, 4.0, 6.0]
    assert (meta["fps"], meta["width"], meta["height"]) == (24.0, WIDTH, HEIGHT)
    assert "warning" not in meta and "rotation" not in meta and "frame_width" not in meta


def test_max_side_shrinks_frames_and_keeps_the_aspect(video_files: dict[str, Path]) -> None:
    video = extract_video(str(video_files["short"]), num_frames=2, max_side=32)
    sizes = {Image.open(io.BytesIO(data)).size for data in video.frames}
    assert sizes == {(32, 24)}
    assert video.metadata()["frame_width"] == 32 and video.metadata()["frame_height"] == 24
    assert (video.width, video.height) == (WIDTH, HEIGHT)


def test_a_truncated_file_uses_the_frames_that_decoded(video_files: dict[str, Path]) -> None:
    video = extract_video(str(video_files["truncated"]), num_frames=8)
    assert 0 < video.total_frames < 60
    assert video.warning and "decoding stopped after" in video.warning
    assert list(video.frame_indices) == sample_indices(video.total_frames, 8)
    assert "warning" in video.metadata()


@pytest.mark.parametrize("name, words", [("audio", "audio only"), ("junk", "cannot open")])
def test_files_without_decodable_video_are_unreadable(
    video_files: dict[str, Path], name: str, words: str
) -> None:
    with pytest.raises(MediaError) as caught:
        extract_video(str(video_files[name]), num_frames=8)
    assert caught.value.code == UNREADABLE_VIDEO
    assert words in caught.value.detail
    assert str(video_files[name]) not in caught.value.detail  # rejects stay deterministic


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        extract_video(str(tmp_path / "nope.mp4"), num_frames=8)
    assert caught.value.code == UNREADABLE_VIDEO
