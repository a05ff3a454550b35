"""The helper process: a hung decoder is stopped by the time limit and the build completes,
in the local executor and inside Ray workers; a crashed helper is replaced."""

from __future__ import annotations

import json
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardify.datagen import chat, text_item, video_item
from shardify.errors import MediaError
from shardify.media.video import UNREADABLE_VIDEO, VIDEO_TIMEOUT
from shardify.media.video_worker import STALL_ENV, VideoWorker
from tests.conftest import run_cli, write_config
from tests.fixtures.video import encode_video

OPTIONS: dict[str, Any] = {
    "num_frames": 4,
    "sampling": "aria",
    "jpeg_quality": 90,
    "max_side": None,
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


@pytest.fixture
def worker() -> Any:
    helper = VideoWorker()
    yield helper
    helper.close()


def test_a_decoder_blocked_in_ffmpeg_is_killed_and_replaced(
    worker: VideoWorker, video_files: dict[str, Path], tmp_path: Path
) -> None:
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)  # opening it blocks inside FFmpeg until a writer comes: none will
    assert worker.extract(str(video_files["short"]), timeout_s=30, **OPTIONS).total_frames == 30
    first = worker.pid
    assert first is not None
    start = time.monotonic()
    with pytest.raises(MediaError) as caught:
        worker.extract(str(fifo), timeout_s=1.0, **OPTIONS)
    assert caught.value.code == VIDEO_TIMEOUT
    assert time.monotonic() - start < 10
    assert not alive(first)
    again = worker.extract(str(video_files["gop"]), timeout_s=30, **OPTIONS)
    assert again.total_frames == 240 and worker.pid not in (None, first)


def test_a_helper_that_dies_mid_video_is_an_unreadable_video(
    worker: VideoWorker, video_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STALL_ENV, "short")
    errors: list[MediaError] = []

    def run() -> None:
        try:
            worker.extract(str(video_files["short"]), timeout_s=60, **OPTIONS)
        except MediaError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while worker.pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = worker.pid
    assert pid is not None
    time.sleep(0.5)  # let it reach the stall
    os.kill(pid, 9)
    thread.join(30)
    assert [e.code for e in errors] == [UNREADABLE_VIDEO]
    assert "died" in errors[0].detail
    assert worker.extract(str(video_files["gop"]), timeout_s=30, **OPTIONS).total_frames == 240


def make_stall_dataset(root: Path) -> Path:
    """Lines: good video, video that stalls (by name), good video, text."""
    (root / "v").mkdir(parents=True)
    for name, frames in (("a.mp4", 30), ("stall_me.mp4", 30), ("b.mp4", 50)):
        encode_video(root / "v" / name, frames=frames)
    lines = [
        {"messages": chat([video_item(), text_item(f"clip {name}")], "ok"),
         "video": {"path": f"v/{name}", "num_frames": 4}}
        for name in ("a.mp4", "stall_me.mp4", "b.mp4")
    ]  # fmt: skip
    lines.append({"messages": chat([text_item("hi")], "there")})
    (root / "train.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    return root


def build_with_a_stalling_video(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: dict[str, Any]
) -> Path:
    root = make_stall_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    config = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out), executor=executor,
                          shard={"max_samples": 2}, video={"timeout_s": 2})  # fmt: skip
    monkeypatch.setenv(STALL_ENV, "stall_me")
    start = time.monotonic()
    result = run_cli("build", str(config), timeout=240)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 200
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, VIDEO_TIMEOUT)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["samples"] == 3
    frames: dict[str, int] = {}
    for shard in sorted(out.glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    doc = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    if "video" in doc:
                        frames[doc["video"]["path"]] = doc["video"]["total_frames"]
    assert frames == {"v/a.mp4": 30, "v/b.mp4": 50}
    return out


@pytest.mark.slow
def test_build_with_a_hung_decoder_completes_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_with_a_stalling_video(tmp_path, monkeypatch, {"kind": "local"})


@pytest.mark.slow
@pytest.mark.ray
def test_build_with_a_hung_decoder_completes_in_ray_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    build_with_a_stalling_video(tmp_path, monkeypatch, {"kind": "ray", "num_cpus": 2})


def test_remote_videos_are_copied_locally_for_the_helper(video_files: dict[str, Path]) -> None:
    """The fetch stage copies a remote video to a temporary file, the helper decodes it, and
    the copy is gone once released."""
    import os

    import fsspec

    from shardify.fetch import Medium, fetch_medium
    from shardify.media.video_worker import get_worker
    from shardify.storage import Location

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/video-test/clips/b.mp4", video_files["bframes"].read_bytes())
    source = Location("memory://video-test")
    assert not source.is_local
    fetched = fetch_medium(source, Medium("clips/b.mp4", "video.path", 1, video=True)).unwrap()
    assert fetched.temporary and os.path.isfile(fetched.file)
    assert fetched.fact is not None and fetched.fact.bytes == video_files["bframes"].stat().st_size
    video = get_worker().extract(fetched.file, num_frames=3, sampling="uniform", jpeg_quality=90,
                                 max_side=None, timeout_s=60)  # fmt: skip
    assert video.total_frames == 192 and list(video.frame_indices) == [0, 96, 191]
    fetched.release()
    assert not os.path.exists(fetched.file)
    too_small = fetch_medium(source, Medium("clips/b.mp4", "video.path", 1, video=True, max_bytes=1000))
    assert too_small.error is not None and too_small.error.code == "file_too_large"
    fs.rm("/video-test", recursive=True)
