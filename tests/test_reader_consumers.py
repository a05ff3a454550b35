"""Other readers of shardify shards: plain webdataset, Ray Data, Hugging Face datasets."""

from __future__ import annotations

from typing import Any

import pytest

from shardify import ShardDataset
from shardify.reader.decode import decode_members
from tests.fixtures.reader import SAMPLES, ReaderBuild


def _reference(build: ReaderBuild) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in ShardDataset(str(build.out), shuffle=False, decode_images=False)}


def _shard_paths(build: ReaderBuild) -> list[str]:
    return sorted(str(p) for p in build.out.glob("train-*.tar"))


def test_plain_webdataset_reads_every_sample(reader_build: ReaderBuild) -> None:
    import webdataset as wds

    reference = _reference(reader_build)
    pipeline = wds.WebDataset(_shard_paths(reader_build), shardshuffle=False, empty_check=False)
    rows = list(pipeline.decode("pil"))
    assert [r["__key__"] for r in rows] == sorted(reference)
    for row in rows:
        doc, ours = row["json"], reference[row["__key__"]]
        suffixes = doc["video"]["frames"] if "video" in doc else doc.get("images", [])
        assert len(suffixes) == len(ours["images"])
        assert all(row[s].mode == "RGB" for s in suffixes)
    raw = list(wds.WebDataset(_shard_paths(reader_build), shardshuffle=False, empty_check=False))
    assert [decode_members(r, decode_images=False) for r in raw] == [reference[k] for k in sorted(reference)]


@pytest.mark.slow
@pytest.mark.ray
def test_ray_data_read_webdataset(reader_build: ReaderBuild) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = ray.data.read_webdataset(_shard_paths(reader_build), decoder=None).take_all()
    finally:
        if started:
            ray.shutdown()
    reference = _reference(reader_build)
    assert sorted(r["__key__"] for r in rows) == sorted(reference)
    for row in rows:
        assert decode_members(row, decode_images=False) == reference[row["__key__"]]


@pytest.mark.slow
def test_hugging_face_adapter(reader_build: ReaderBuild) -> None:
    from shardify import ReaderError
    from shardify.reader.hf import COLUMNS, to_hf_dataset

    ours = [s["key"] for s in ShardDataset(str(reader_build.out), seed=4, decode_images=False)]
    examples = list(to_hf_dataset(str(reader_build.out), seed=4))
    assert [e["key"] for e in examples] == ours
    assert all(tuple(e) == COLUMNS for e in examples)
    video = next(e for e in examples if e["video"] is not None)
    assert len(video["images"]) == len(video["video"]["frames"]) and video["images"][0].mode == "RGB"
    halves = to_hf_dataset(str(reader_build.out), seed=4, parts=2, rank=1, world_size=2,
                           decode_images=False)  # fmt: skip
    assert halves.num_shards == 2
    keys = [e["key"] for e in halves]
    assert len(keys) == SAMPLES // 2 and not set(keys) & set(
        e["key"] for e in to_hf_dataset(str(reader_build.out), seed=4, rank=0, world_size=2,
                                        decode_images=False)  # fmt: skip
    )
    with pytest.raises(ReaderError, match="map"):
        to_hf_dataset(str(reader_build.out), transform=str)
