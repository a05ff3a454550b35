"""Video benchmarks: shardify's frame extraction against plain PyAV on the same videos.

shardify is timed the way the build runs it: through the per-process helper
(:mod:`shardify.media.video_worker`, already started), 8 frames, ``aria`` sampling, JPEG q90.
Baselines, measured in the same run and interleaved with it:

- ``decode to last``: PyAV decodes up to the last needed frame (as if T were known for
  free) and converts + JPEG-encodes the picked frames at the same quality, the same way
  shardify does: the least work that yields the same frames;
- ``decode all``: PyAV decodes every frame of the video and encodes the picked ones (what
  a loader that counts by decoding does); for the sparse case, plain decode of every frame
  with no conversion at all (the strict baseline).

Cases: generated videos (H.264 360p/720p with one keyframe, VP9), the real corpus when
``$SHARDIFY_TEST_MEDIA`` is set, and sparse sampling of a long keyframe-rich video (where
shardify seeks) against decode-all. ``python scripts/bench_video.py [--smoke]`` prints JSON.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CaseResult, best_time, run_standalone  # noqa: E402

log = logging.getLogger("bench.video")
NUM_FRAMES = 8
QUALITY = 90


def decode_all(path: Path, picks: frozenset[int] = frozenset()) -> int:
    """Decode every frame of the best video stream, JPEG-encoding those in ``picks``."""
    import av
    from av.video.reformatter import VideoReformatter

    count, reformatter = 0, VideoReformatter()
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(container.streams.best("video")):
                if count in picks:
                    encode(frame, reformatter)
                count += 1
        except av.FFmpegError:
            pass
    return count


def decode_to_last(path: Path, indices: list[int]) -> int:
    """Decode up to the last of ``indices`` and JPEG-encode the picked frames."""
    import av
    from av.video.reformatter import VideoReformatter

    wanted, last, size, reformatter = set(indices), max(indices), 0, VideoReformatter()
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.best("video"))):
            if i in wanted:
                size += encode(frame, reformatter)
            if i >= last:
                break
    return size


def encode(frame: Any, reformatter: Any) -> int:
    """RGB + JPEG the way shardify does it (one scaler per video, no extra copy), so the
    ratios measure what knowing T exactly and the helper process cost; the JPEG's size."""
    from PIL import Image

    plane = reformatter.reformat(frame, format="rgb24").planes[0]
    image = Image.frombuffer("RGB", (plane.width, plane.height), plane, "raw", "RGB",
                             plane.line_size, 1)  # fmt: skip
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=QUALITY)
    return out.tell()


def shardify_extract(path: Path) -> Any:
    from shardify.media.video_worker import get_worker

    return get_worker().extract(str(path), num_frames=NUM_FRAMES, sampling="aria",
                                jpeg_quality=QUALITY, max_side=None, timeout_s=600)  # fmt: skip


def timed_set(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds of each function, runs interleaved round by round."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, repeat=1))
    return best


def case_extract(label: str, videos: list[Path], repeat: int) -> list[CaseResult]:
    """shardify vs decode-to-last and vs decode-all over a set of videos (sums of times)."""
    from shardify.media.video import sample_indices

    shardify_extract(videos[0])  # start the helper outside the timing
    picks = {p: sample_indices(decode_all(p), NUM_FRAMES) for p in videos}
    times = timed_set({
        "shardify": lambda: [shardify_extract(p) for p in videos],
        "decode_to_last": lambda: [decode_to_last(p, picks[p]) for p in videos],
        "decode_all": lambda: [decode_all(p, frozenset(picks[p])) for p in videos],
    }, repeat)  # fmt: skip
    raw = {f"{k}_s": round(v, 4) for k, v in times.items()} | {"videos": [p.name for p in videos]}
    return [
        CaseResult(name=f"video.extract_{label}.vs_decode_to_last",
                   ratio=round(times["shardify"] / times["decode_to_last"], 3), target="<= 1.3",
                   meaning="shardify extraction time / PyAV decode-to-last-needed-frame + JPEG of "
                           "the picked frames", raw=raw),
        CaseResult(name=f"video.extract_{label}.vs_decode_all",
                   ratio=round(times["shardify"] / times["decode_all"], 3), target="<= 1.3",
                   meaning="shardify extraction time / PyAV decode of every frame + JPEG of the "
                           "picked frames", raw=raw),
    ]  # fmt: skip


def case_sparse(video: Path, repeat: int) -> CaseResult:
    """Sparse sampling of a long keyframe-rich video: shardify seeks, decode-all does not."""
    shardify_extract(video)
    times = timed_set({"shardify": lambda: shardify_extract(video),
                       "decode_all": lambda: decode_all(video)}, repeat)  # fmt: skip
    return CaseResult(
        name="video.sparse_seek.vs_decode_all",
        ratio=round(times["decode_all"] / times["shardify"], 3), target=">= 3.0",
        meaning="PyAV decode-all time / shardify extraction time (8 frames of a long video, "
                "keyframe every second, 40 s of 720p)",
        raw={f"{k}_s": round(v, 4) for k, v in times.items()} | {"video": video.name},
    )  # fmt: skip


def generated(workdir: Path, smoke: bool) -> tuple[list[Path], Path]:
    """The generated set and the long keyframe-rich video (cached in ``workdir``)."""
    from shardify.datagen import make_video

    scale = 4 if smoke else 1
    specs = {
        "h264_360p.mp4": dict(frames=300 // scale, width=640 // scale, height=360 // scale),
        "h264_720p.mp4": dict(frames=150 // scale, width=1280 // scale, height=720 // scale),
        "vp9_360p.webm": dict(frames=150 // scale, width=640 // scale, height=360 // scale,
                              codec="libvpx-vp9"),
        "long_gop30_720p.mp4": dict(frames=1200 // scale, width=1280 // scale, height=720 // scale,
                                    fps=30, gop=30),
    }  # fmt: skip
    paths = []
    for name, spec in specs.items():
        path = workdir / (f"smoke-{name}" if smoke else name)
        if not path.exists():
            make_video(path, pattern="moving", **spec)  # type: ignore[arg-type]
        paths.append(path)
    return paths[:3], paths[3]


def corpus_videos() -> list[Path]:
    """Accepted corpus videos with at least 60 frames (when $SHARDIFY_TEST_MEDIA is set)."""
    root = os.environ.get("SHARDIFY_TEST_MEDIA")
    if not root or not (Path(root) / "manifest.json").is_file():
        return []
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    return [Path(root) / name for name, entry in sorted(manifest.items())
            if name.startswith("videos/") and (entry.get("decoded_frames") or 0) >= 60]  # fmt: skip


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    """Every video case; ``smoke`` uses tiny videos and one round."""
    workdir.mkdir(parents=True, exist_ok=True)
    repeat = 1 if smoke else 3
    videos, long_video = generated(workdir, smoke)
    results = case_extract("generated", videos, repeat)
    corpus = corpus_videos()
    if corpus and not smoke:
        results += case_extract("corpus", corpus, repeat)
    results.append(case_sparse(long_video, repeat))
    return results


if __name__ == "__main__":
    sys.exit(run_standalone(run, "video", __doc__))
