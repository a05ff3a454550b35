"""Small synthetic Aria-format datasets: real Pillow images and PyAV-encoded videos.

Used by ``make demo``, the test suite and the benchmarks, so every one of them exercises the
same real code paths on data that is made on the spot (nothing downloaded).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import orjson
from PIL import Image, ImageDraw


def make_image(width: int, height: int, *, seed: int = 0, fmt: str = "JPEG", quality: int = 85) -> bytes:
    """An image with gradients and shapes (compresses like a photo, not like a flat fill)."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    tint = Image.new("RGB", (width, height), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image = Image.blend(image, tint, 0.5)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(1, max(2, width // 3)), y0 + rng.randrange(1, max(2, height // 3))
        draw.ellipse((x0, y0, x1, y1), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue()


def frame_color(index: int) -> tuple[int, int, int]:
    """The solid colour of frame ``index`` in :func:`make_video` (identifies frames in tests)."""
    return ((index * 37) % 256, (index * 91 + 60) % 256, (index * 53 + 120) % 256)


def make_video(
    path: Path,
    *,
    frames: int = 24,
    width: int = 64,
    height: int = 48,
    fps: int = 24,
    codec: str = "libx264",
    gop: Optional[int] = None,
    pattern: str = "solid",
    options: Optional[dict[str, str]] = None,
) -> Path:
    """Encode a test video. ``pattern``: ``"solid"`` — frame i is :func:`frame_color` (i), so
    tests can tell which frame was picked; ``"moving"`` — a moving gradient; ``"textured"`` —
    texture, motion and grain that decode like camera footage. ``options`` replace the
    encoder options (default for libx264: ultrafast, no B-frames)."""
    makers = {"solid": _solid_frames, "moving": _moving_frames, "textured": _textured_frames}
    if pattern not in makers:
        raise ValueError(f"pattern must be one of {sorted(makers)}, got {pattern!r}")
    if options is None and codec == "libx264":
        options = {"preset": "ultrafast", "bf": "0"}
    return encode_video(path, makers[pattern](frames, width, height), width=width, height=height,
                        fps=fps, codec=codec, gop=gop, options=options)  # fmt: skip


def encode_video(
    path: Path,
    frames: Iterable[Any],
    *,
    width: int,
    height: int,
    fps: int = 24,
    codec: str = "libx264",
    gop: Optional[int] = None,
    options: Optional[dict[str, str]] = None,
    container_options: Optional[dict[str, str]] = None,
) -> Path:
    """Encode RGB frames (``height x width x 3`` uint8 arrays) with PyAV, frame i at pts i."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if gop:
            stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.bit_rate = 2_000_000
        if options:
            stream.options = options
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _solid_frames(frames: int, width: int, height: int) -> Iterator[Any]:
    import numpy as np

    for i in range(frames):
        array = np.empty((height, width, 3), dtype=np.uint8)
        array[:, :] = frame_color(i)
        yield array


def _moving_frames(frames: int, width: int, height: int) -> Iterator[Any]:
    import numpy as np

    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    for i in range(frames):
        shifted = (base + i * 4) % 256
        array = np.broadcast_to(shifted, (height, width, 3)).astype(np.uint8).copy()
        array[:, :, 1] = (array[:, :, 1] + np.arange(height)[:, None] * 2 % 256).astype(np.uint8)
        yield array


def _textured_frames(frames: int, width: int, height: int) -> Iterator[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 8 + 2, (width + frames * 3) // 8 + 2, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(small).resize((small.shape[1] * 8, small.shape[0] * 8),
                                                       Image.Resampling.BICUBIC)).astype(np.int16)  # fmt: skip
    for i in range(frames):
        grain = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
        yield np.clip(texture[:height, i * 3 : i * 3 + width] + grain, 0, 255).astype(np.uint8)


def chat(user_items: list[dict[str, Any]], answer: str) -> list[dict[str, Any]]:
    """A two-turn chat in the Aria format."""
    return [
        {"role": "user", "content": user_items},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def image_item() -> dict[str, Any]:
    return {"type": "image", "text": None}


def text_item(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def video_item() -> dict[str, Any]:
    return {"type": "video", "text": None}


@dataclass
class DatasetSpec:
    """How many of each kind of line :func:`make_dataset` writes."""

    image_samples: int = 20
    video_samples: int = 4
    text_samples: int = 4
    images_per_sample: int = 2
    image_size: tuple[int, int] = (96, 64)
    video_frames: int = 30
    video_size: tuple[int, int] = (64, 48)
    num_frames: int = 8
    test_split: bool = True
    seed: int = 0
    extra_lines: list[str] = field(default_factory=list)
    """Raw lines appended to train.jsonl as they are (for reject tests)."""


def make_dataset(root: Union[str, Path], spec: Optional[DatasetSpec] = None) -> Path:
    """Write an Aria-format dataset with images, videos and text-only lines under ``root``."""
    root = Path(root)
    spec = spec or DatasetSpec()
    rng = random.Random(spec.seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines: list[bytes] = []
    n_images = 0
    for s in range(spec.image_samples):
        paths = []
        for _ in range(spec.images_per_sample):
            w, h = spec.image_size
            fmt = "PNG" if n_images % 5 == 4 else "JPEG"
            path = f"images/img_{n_images:05d}.{'png' if fmt == 'PNG' else 'jpg'}"
            (root / path).write_bytes(make_image(w, h, seed=spec.seed * 100_000 + n_images, fmt=fmt))
            paths.append(path)
            n_images += 1
        items = [image_item() for _ in paths] + [text_item(f"What is in image set {s}?")]
        lines.append(orjson.dumps({"messages": chat(items, f"Shapes, set {s}."), "images": paths}))
    for v in range(spec.video_samples):
        path = f"videos/clip_{v:03d}.mp4"
        make_video(root / path, frames=spec.video_frames + v, width=spec.video_size[0],
                   height=spec.video_size[1])  # fmt: skip
        items = [video_item(), text_item(f"Describe clip {v}.")]
        lines.append(orjson.dumps({"messages": chat(items, "Colours change."),
                                   "video": {"path": path, "num_frames": spec.num_frames}}))  # fmt: skip
    for t in range(spec.text_samples):
        lines.append(orjson.dumps({"messages": chat([text_item(f"Say {t}.")], str(t))}))
    rng.shuffle(lines)
    lines.extend(line.encode() for line in spec.extra_lines)
    (root / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    if spec.test_split:
        test = [orjson.dumps({"messages": chat([text_item("Held out?")], "Yes.")})]
        (root / "test.jsonl").write_bytes(b"\n".join(test) + b"\n")
    return root
