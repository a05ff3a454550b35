"""Probe a video, pick the frames the Aria loader would, decode and encode them as JPEG.

PyAV is imported here only. Frame ``i`` means the i-th frame that decodes, in
presentation order, of the stream ffmpeg's "best stream" choice picks.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

from PIL import Image

from shardify.errors import MediaError

UNREADABLE_VIDEO = "unreadable_video"
VIDEO_TIMEOUT = "video_timeout"

Sampling = Literal["aria", "uniform"]


def sample_indices(total_frames: int, num_frames: int, sampling: Sampling = "aria") -> list[int]:
    """The frame indices the training loader feeds, in order (CONTRACT.md §1).

    ``aria``: ``floor(T / n) * i`` for ``i`` in ``0..n-1`` (every index is 0 when n > T);
    ``uniform``: ``round(linspace(0, T - 1, n))`` with numpy's round-half-to-even.
    """
    if total_frames < 1 or num_frames < 1:
        raise ValueError(f"need T >= 1 and n >= 1, got T={total_frames}, n={num_frames}")
    if sampling == "aria":
        stride = total_frames // num_frames
        return [stride * i for i in range(num_frames)]
    if sampling == "uniform":
        if num_frames == 1:
            return [0]
        step = (total_frames - 1) / (num_frames - 1)
        return [int(round(step * i)) for i in range(num_frames)]
    raise ValueError(f"unknown sampling {sampling!r}")


def frame_suffix(position: int) -> str:
    """Member suffix of the frame first used at sampled ``position``: ``frame0007.jpg``."""
    return f"frame{position:04d}.jpg"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractedVideo:
    """The sampled frames of one video and what the sample json records about them."""

    frames: tuple[bytes, ...]
    """One JPEG per distinct sampled index, in order of first use."""
    suffixes: tuple[str, ...]
    """Per sampled position, the member suffix holding its frame (repeats share one)."""
    frame_indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    total_frames: int
    fps: float
    width: int
    height: int
    warning: Optional[str] = None
    """Set when decoding stopped early and the frames that did decode were used."""

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "frames": list(self.suffixes),
            "frame_indices": list(self.frame_indices),
            "timestamps": list(self.timestamps),
            "total_frames": self.total_frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
        }
        if self.warning:
            meta["warning"] = self.warning
        return meta


def extract_video(
    source: Any,
    *,
    num_frames: int,
    sampling: Sampling = "aria",
    jpeg_quality: int = 90,
    max_side: Optional[int] = None,
) -> ExtractedVideo:
    """Decode ``source`` (a path or a binary file object) and return its sampled frames.

    Raises MediaError(unreadable_video) for files with no decodable video frame.
    """
    import av

    try:
        total, warning = _count_frames(source)
    except av.FFmpegError as exc:
        raise MediaError(UNREADABLE_VIDEO, f"cannot open the video: {exc}") from None
    if total == 0:
        raise MediaError(UNREADABLE_VIDEO, "no video frame decodes" + (f" ({warning})" if warning else ""))
    indices = sample_indices(total, num_frames, sampling)
    picked, fps, timestamps = _decode_picked(source, sorted(set(indices)))
    order = _first_use(indices)
    frames = tuple(_encode(picked[i], jpeg_quality, max_side) for i in order)
    width, height = _display_size(picked[indices[0]])
    return ExtractedVideo(
        frames=frames,
        suffixes=tuple(frame_suffix(indices.index(i)) for i in indices),
        frame_indices=tuple(indices),
        timestamps=tuple(timestamps[i] for i in indices),
        total_frames=total, fps=fps, width=width, height=height, warning=warning,
    )  # fmt: skip


def _rewind(source: Any) -> Any:
    if hasattr(source, "seek"):
        source.seek(0)
    return source


def _count_frames(source: Any) -> tuple[int, Optional[str]]:
    import av

    count = 0
    with av.open(_rewind(source)) as container:
        stream = _best_video_stream(container)
        try:
            for _ in container.decode(stream):
                count += 1
        except av.FFmpegError as exc:
            if count == 0:
                raise
            return count, f"decoding stopped after {count} frames: {exc}"
    return count, None


def _decode_picked(source: Any, wanted: Sequence[int]) -> tuple[dict[int, Any], float, dict[int, float]]:
    import av

    picked: dict[int, Any] = {}
    stamps: dict[int, float] = {}
    want = set(wanted)
    last = max(wanted)
    with av.open(_rewind(source)) as container:
        stream = _best_video_stream(container)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                picked[i] = frame
                stamps[i] = round(float(frame.time), 6) if frame.time is not None else i / fps if fps else 0.0
            if i >= last:
                break
    return picked, fps, stamps


def _best_video_stream(container: Any) -> Any:
    stream = container.streams.best("video")
    if stream is None:
        raise MediaError(UNREADABLE_VIDEO, "the file has no video stream")
    return stream


def _first_use(indices: list[int]) -> list[int]:
    seen: dict[int, None] = {}
    for i in indices:
        seen.setdefault(i, None)
    return list(seen)


_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def _to_image(frame: Any) -> Image.Image:
    image = frame.to_image()
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    if rotation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[rotation])
    return image.convert("RGB")


def _display_size(frame: Any) -> tuple[int, int]:
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    w, h = frame.width, frame.height
    return (h, w) if rotation in (90, 270) else (w, h)


def _encode(frame: Any, quality: int, max_side: Optional[int]) -> bytes:
    image = _to_image(frame)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
