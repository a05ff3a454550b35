"""Probe a video, pick the frames the Aria loader would, decode them and encode them as JPEG.

Frame ``i`` is the i-th frame that decodes, in presentation order, of the stream that
ffmpeg's "best stream" choice (``av_find_best_stream``) picks; ``T`` is how many decode
(CONTRACT.md §1). How T is known without decoding twice, and when seeking replaces
decoding everything, is described in :mod:`shardify.media.video_decode`.

Frames are stored as the loader sees them plus the display rotation: RGB JPEG of the
stored pixels, turned upright by the stream's display matrix; non-square pixels are left
as stored and their sample aspect ratio recorded (docs/video.md). :func:`extract_video`
runs in the calling process with no time limit; the build goes through
:mod:`shardify.media.video_worker`, which adds one.
"""

from __future__ import annotations

import io
import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal, Optional

from PIL import Image

from shardify.errors import MediaError
from shardify.rejects import UNREADABLE_VIDEO, VIDEO_TIMEOUT  # noqa: F401 - re-exported

Sampling = Literal["aria", "uniform"]
log = logging.getLogger(__name__)


def sample_indices(total_frames: int, num_frames: int, sampling: Sampling = "aria") -> list[int]:
    """The frame indices the training loader feeds, in order (CONTRACT.md §1).

    ``aria``: ``floor(T / n) * i`` for ``i`` in ``0..n-1`` (every index is 0 when n > T);
    ``uniform``: ``numpy.round(numpy.linspace(0, T - 1, n))``, reproduced in floats the way
    numpy computes it (``i * step``, the last point exact), so halves round to even alike.
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
        return [round(i * step) for i in range(num_frames - 1)] + [total_frames - 1]
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
    """Seconds from the first decoded frame to each sampled frame."""
    total_frames: int
    fps: float
    width: int
    """Display width (after rotation) in stored pixels."""
    height: int
    rotation: int = 0
    """The display-matrix rotation that was applied, as ffprobe prints it (-90: clockwise)."""
    sample_aspect_ratio: Optional[str] = None
    """``"W:H"`` when pixels are not square (frames keep the stored pixel grid)."""
    frame_size: Optional[tuple[int, int]] = None
    """The JPEGs' size when ``max_side`` shrank them."""
    warning: Optional[str] = None
    """Set when decoding stopped early and the frames that did decode were used."""

    def metadata(self) -> dict[str, Any]:
        """The fields of the sample json's ``video`` object that extraction decides."""
        meta: dict[str, Any] = {
            "frames": list(self.suffixes),
            "frame_indices": list(self.frame_indices),
            "timestamps": list(self.timestamps),
            "total_frames": self.total_frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
        }
        if self.rotation:
            meta["rotation"] = self.rotation
        if self.sample_aspect_ratio:
            meta["sample_aspect_ratio"] = self.sample_aspect_ratio
        if self.frame_size:
            meta["frame_width"], meta["frame_height"] = self.frame_size
        if self.warning:
            meta["warning"] = self.warning
        return meta


def extract_video(
    path: str,
    *,
    num_frames: int,
    sampling: Sampling = "aria",
    jpeg_quality: int = 90,
    max_side: Optional[int] = None,
    seek: Literal["auto", "never"] = "auto",
) -> ExtractedVideo:
    """Decode the sampled frames of the video file at ``path`` and encode them as JPEG.

    ``seek="never"`` always decodes from the start (see docs/video.md for the trade-off).

    Raises MediaError(unreadable_video) when the file cannot be opened, has no video
    stream, or no frame decodes.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    with ExitStack() as stack:
        container, stream = _open(path, stack)
        picked, indices, warning = _pick(path, container, stream, stack, num_frames, sampling,
                                         seek=seek)  # fmt: skip
        order = list(dict.fromkeys(indices))
        first = picked.frames[indices[0]]
        reformatter = _reformatter()
        encoded = [_encode(picked.frames[i], jpeg_quality, max_side, reformatter) for i in order]
        return ExtractedVideo(
            frames=tuple(data for data, _ in encoded),
            suffixes=tuple(frame_suffix(indices.index(i)) for i in indices),
            frame_indices=tuple(indices),
            timestamps=_timestamps(picked.pts, indices, stream),
            total_frames=picked.total, fps=_fps(stream),
            width=_display_size(first)[0], height=_display_size(first)[1],
            rotation=_rotation_value(first), sample_aspect_ratio=_sar(stream),
            frame_size=encoded[0][1] if encoded[0][1] != _display_size(first) else None,
            warning=warning,
        )  # fmt: skip


def _open(path: str, stack: ExitStack) -> tuple[Any, Any]:
    import av

    try:
        container = stack.enter_context(av.open(path, metadata_errors="ignore"))
    except (av.FFmpegError, OSError) as exc:
        from shardify.media.video_decode import describe_error

        raise MediaError(
            UNREADABLE_VIDEO, f"cannot open the video: {describe_error(exc)}"
        ) from None
    stream = container.streams.best("video")
    if stream is None:
        what = "audio only" if container.streams.audio else "the file has no media streams"
        if not container.streams.audio and container.streams:
            what = "no audio or video, only other streams"
        raise MediaError(UNREADABLE_VIDEO, f"no video stream ({what})")
    return container, stream


def _pick(
    path: str, container: Any, stream: Any, stack: ExitStack, num_frames: int, sampling: Sampling,
    *, seek: str = "auto",
) -> tuple[Any, list[int], Optional[str]]:
    """Decode what is needed: seek when it pays and the table is trusted, else count."""
    from shardify.media import video_decode as vd

    table = vd.read_packets(container, stream)
    fresh = True
    index = vd.rank_index(table, int(stream.frames or 0), container.format.name)
    if index is not None and seek == "auto":
        targets = sample_indices(len(index.sorted_pts), num_frames, sampling)
        plan = vd.should_seek(index, targets)
        if plan is not None:
            try:
                return (
                    vd.decode_seeking(table, index, stream.codec_context, plan, set(targets)),
                    targets,
                    None,
                )
            except vd.DistrustError as exc:
                log.info("%s: seeking was not exact (%s); decoding every frame instead", path, exc)
                fresh = False
    if not (fresh and table.buffered):
        container, stream = _open(path, stack)
    packets = iter(table.packets) if fresh and table.buffered else vd.demuxed(container, stream)
    keep = vd.candidate_indices(table.count, num_frames, sampling)
    picked = vd.decode_counting(
        packets, stream.codec_context, keep, flush=table.demux_error is None
    )
    picked.error = picked.error or table.demux_error
    if picked.total == 0:
        reason = f" ({picked.error})" if picked.error else ""
        raise MediaError(UNREADABLE_VIDEO, f"no frame decodes out of {table.count} packets{reason}")
    indices = sample_indices(picked.total, num_frames, sampling)
    if not set(indices) <= picked.frames.keys():
        container, stream = _open(path, stack)
        again = vd.decode_counting(vd.demuxed(container, stream), stream.codec_context, set(indices),
                                   stop_after=max(indices))  # fmt: skip
        if not set(indices) <= again.frames.keys():
            raise MediaError(UNREADABLE_VIDEO, "a second decode pass gave different frames")
        picked.frames = again.frames
    warning = None
    if picked.error:
        warning = (
            f"decoding stopped after {picked.total} frames ({table.count} packets): {picked.error}"
        )
    return picked, indices, warning


def _timestamps(pts: list[Optional[int]], indices: list[int], stream: Any) -> tuple[float, ...]:
    """Seconds from the first frame, from the sorted frame timestamps (AVI stamps arrive
    out of order) or, when some are missing, from the frame rate."""
    base = stream.time_base
    if base and pts and all(p is not None for p in pts):
        ordered = sorted(pts)  # type: ignore[type-var]
        return tuple(round(float((ordered[i] - ordered[0]) * base), 6) for i in indices)  # type: ignore[operator]
    fps = _fps(stream)
    return tuple(round(i / fps, 6) if fps else 0.0 for i in indices)


def _fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return round(float(rate), 6) if rate else 0.0


def _sar(stream: Any) -> Optional[str]:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not sar or sar == 1:
        return None
    return f"{sar.numerator}:{sar.denominator}"


_TRANSPOSE = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def _rotation_value(frame: Any) -> int:
    """The display-matrix rotation in degrees as ffprobe prints it (counter-clockwise)."""
    return int(round(getattr(frame, "rotation", 0) or 0))


def _turn(frame: Any) -> int:
    """Counter-clockwise quarter turns (0, 90, 180 or 270) that make the frame upright."""
    return (round(_rotation_value(frame) / 90) * 90) % 360


def _display_size(frame: Any) -> tuple[int, int]:
    w, h = frame.width, frame.height
    return (h, w) if _turn(frame) in (90, 270) else (w, h)


def _reformatter() -> Any:
    from av.video.reformatter import VideoReformatter

    return VideoReformatter()


def _encode(
    frame: Any, quality: int, max_side: Optional[int], reformatter: Any
) -> tuple[bytes, tuple[int, int]]:
    """RGB JPEG of ``frame`` upright, at most ``max_side`` on its longer side; and its size.

    One reformatter per video keeps FFmpeg's scaler set up between frames (about 1.5 ms a
    720p frame), and the RGB plane goes to Pillow without the row-by-row copy of
    ``VideoFrame.to_image``; the pixels are the same.
    """
    turn = _turn(frame)
    width, height = frame.width, frame.height
    scaling: dict[str, Any] = {}
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        scaling = {"width": width, "height": height, "interpolation": "AREA"}
    plane = reformatter.reformat(frame, format="rgb24", **scaling).planes[0]
    if plane.line_size > 0:
        image = Image.frombuffer(
            "RGB", (plane.width, plane.height), plane, "raw", "RGB", plane.line_size, 1
        )
    else:
        image = frame.to_image(**scaling)
    if turn:
        image = image.transpose(_TRANSPOSE[turn])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling=_subsampling(frame.format.name))
    return out.getvalue(), image.size


def _subsampling(pix_fmt: str) -> int:
    """Pillow's JPEG chroma subsampling matching the source: 2 (4:2:0), 1 (4:2:2), 0 (4:4:4).

    A 4:2:0 JPEG of a 4:4:4 source (screen captures, test cards) smears colour edges."""
    if any(tag in pix_fmt for tag in ("420", "411", "410", "nv12", "nv21", "p010", "p016")):
        return 2
    if any(tag in pix_fmt for tag in ("422", "yuyv", "uyvy", "nv16", "p210")):
        return 1
    return 0
