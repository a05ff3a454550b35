"""Every real video of the shared corpus ($SHARDIFY_TEST_MEDIA/videos): accepted or rejected
as its measured properties predict, and for accepted ones the frames of an independent
reference decode (every frame with PyAV, picked by index, rotated) within JPEG tolerance."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import orjson
import pytest
from PIL import Image

from shardify.datagen import chat, text_item, video_item
from shardify.errors import MediaError
from shardify.media.video import UNREADABLE_VIDEO, extract_video, sample_indices
from tests.conftest import run_cli, write_config

pytestmark = pytest.mark.media
NUM_FRAMES = 8


@dataclass
class Reference:
    """What a plain decode of every frame of the best video stream gives."""

    images: list[Image.Image]
    partial: bool


def predicted_reject(entry: dict[str, Any]) -> bool:
    """The manifest's measurements that make a file unreadable_video."""
    return bool(
        entry.get("open_error")
        or str(entry.get("pyav_streams", "0v")).startswith("0v")
        or not entry.get("decoded_frames")
    )


def reference_decode(path: Path, picks: Optional[set[int]] = None) -> Reference:
    """Decode every frame in order (stopping at the first error, like a plain PyAV loop);
    keep upright RGB images of the frames in ``picks`` (all when None)."""
    import av

    images: list[Any] = []
    partial = False
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        try:
            for i, frame in enumerate(container.decode(stream)):
                if picks is None or i in picks:
                    image = frame.to_image().rotate(frame.rotation or 0, expand=True)
                    images.append(image)
                else:
                    images.append(None)
        except av.FFmpegError:
            partial = True
    return Reference(images=images, partial=partial)


def mean_abs_diff(jpeg: bytes, image: Image.Image) -> float:
    ours = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
    theirs = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).mean())


def corpus(media_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    manifest = json.loads((media_dir / "manifest.json").read_text())
    return sorted((k, v) for k, v in manifest.items() if k.startswith("videos/"))


def test_every_corpus_video_is_accepted_or_rejected_as_measured(media_dir: Path) -> None:
    seen = 0
    for name, entry in corpus(media_dir):
        path = media_dir / name
        if predicted_reject(entry):
            with pytest.raises(MediaError) as caught:
                extract_video(str(path), num_frames=NUM_FRAMES)
            assert caught.value.code == UNREADABLE_VIDEO, name
            continue
        video = extract_video(str(path), num_frames=NUM_FRAMES)
        check_against_reference(path, name, entry, video)
        seen += 1
    assert seen >= 35


def check_against_reference(path: Path, name: str, entry: dict[str, Any], video: Any) -> None:
    reference = reference_decode(path, picks=set(video.frame_indices))
    count = len(reference.images)
    assert video.total_frames == count, name
    if str(entry.get("pyav_streams", "")).startswith("1v"):  # one video stream: no choice to make
        assert video.total_frames == entry["decoded_frames"], name
    indices = sample_indices(count, NUM_FRAMES)
    assert list(video.frame_indices) == indices, name
    assert bool(video.warning) == reference.partial == bool(entry.get("decode_error")), name
    by_suffix = dict(zip(dict.fromkeys(video.suffixes), video.frames))
    for suffix, index in zip(video.suffixes, indices):
        assert mean_abs_diff(by_suffix[suffix], reference.images[index]) < 4.0, (name, index)
    stored = (
        [int(x) for x in entry["streams"][0]["size"].split("x")] if entry.get("streams") else None
    )
    if stored and str(entry.get("pyav_streams", "")).startswith("1v"):
        turned = abs(int(entry["streams"][0].get("rotation", 0))) == 90
        assert [video.width, video.height] == (stored[::-1] if turned else stored), name


@pytest.mark.slow
def test_build_over_the_corpus_videos(media_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "videos").mkdir(parents=True)
    lines, expected = [], {}
    for i, (name, entry) in enumerate(corpus(media_dir)):
        shutil.copyfile(media_dir / name, root / name)  # inside the root: no symlinks out
        item = {"messages": chat([video_item(), text_item("What happens?")], "Things."),
                "video": {"path": name, "num_frames": NUM_FRAMES}}  # fmt: skip
        lines.append(orjson.dumps(item))
        expected[i + 1] = (name, predicted_reject(entry), entry)
    (root / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", input=str(root), output=str(out),
                          executor={"kind": "local"}, shard={"max_samples": 16})  # fmt: skip
    result = run_cli("build", str(config), timeout=600)
    assert result.returncode == 0, result.stderr
    rejects = {
        r["line"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())
    }
    assert {line for line, (_, bad, _) in expected.items() if bad} == set(rejects)
    assert {r["reason"] for r in rejects.values()} == {UNREADABLE_VIDEO}
    docs = read_video_docs(out)
    assert len(docs) == len(expected) - len(rejects)
    for line, (name, bad, entry) in expected.items():
        if bad:
            continue
        doc = docs[line]
        assert doc["path"] == name and len(doc["frames"]) == NUM_FRAMES
        assert {"num_frames", "sampling", "timestamps", "fps", "width", "height"} <= set(doc)
        assert doc["frame_indices"] == sample_indices(doc["total_frames"], NUM_FRAMES)
        assert ("warning" in doc) == bool(entry.get("decode_error")), name
    summary = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert summary["samples"] + summary["rejected"] == len(expected)
    partial = sum(1 for _, bad, entry in expected.values() if not bad and entry.get("decode_error"))
    assert partial >= 2 and summary["warnings"].get("video_partial_decode") == partial
    assert summary["rejects_by_reason"] == {UNREADABLE_VIDEO: len(rejects)}


def read_video_docs(out: Path) -> dict[int, dict[str, Any]]:
    """1-based line -> the sample json's video object, checking every frame member exists."""
    docs: dict[int, dict[str, Any]] = {}
    for shard in sorted(out.glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            names = set(tar.getnames())
            for member in tar:
                if member.name.endswith(".json"):
                    doc = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    key = member.name.split(".")[0]
                    assert all(f"{key}.{suffix}" in names for suffix in doc["video"]["frames"])
                    docs[doc["source"]["line"]] = doc["video"]
    return docs
