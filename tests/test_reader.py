"""ShardDataset end to end: what was written is read back; ranks, workers, order, errors."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from shardify import ReaderError, ShardDataset
from shardify.datagen import frame_color
from tests.fixtures.reader import SAMPLES, SHARD_SIZES, ReaderBuild


def _source_lines(root: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (root / "train.jsonl").read_bytes().splitlines()]


def test_reads_back_exactly_what_was_written(reader_build: ReaderBuild) -> None:
    ds = ShardDataset(str(reader_build.out), shuffle=False)
    samples = list(ds)
    lines = _source_lines(reader_build.root)
    assert [s["key"] for s in samples] == [f"{i:09d}" for i in range(len(lines))]
    kinds: Counter[str] = Counter()
    for sample in samples:
        line = lines[int(sample["key"])]
        assert sample["source"] == {"split": "train", "file": "train.jsonl", "line": int(sample["key"]) + 1}
        if "video" in line:
            kinds["video"] += 1
            _check_video(sample, line)
        else:
            kinds["image" if line.get("images") else "text"] += 1
            assert sample["messages"] == line["messages"]
            paths = line.get("images", [])
            assert sample.get("image_paths", []) == paths
            assert len(sample["images"]) == len(paths)
            for image, path in zip(sample["images"], paths):
                original = Image.open(reader_build.root / path).convert("RGB")
                assert image.mode == "RGB" and image.size == original.size
                assert image.tobytes() == original.tobytes()
    assert kinds == {"image": 13, "video": 3, "text": 4}


def _check_video(sample: dict[str, Any], line: dict[str, Any]) -> None:
    n = line["video"]["num_frames"]
    user = sample["messages"][0]["content"]
    original = line["messages"][0]["content"]
    at = next(i for i, item in enumerate(original) if item["type"] == "video")
    assert user[:at] == original[:at]
    assert user[at : at + n] == [{"type": "image", "text": None}] * n
    assert user[at + n :] == original[at + 1 :]
    assert sample["messages"][1:] == line["messages"][1:]
    assert len(sample["images"]) == n
    for image, index in zip(sample["images"], sample["video"]["frame_indices"]):
        assert image.mode == "RGB"
        pixel = image.getpixel((image.width // 2, image.height // 2))
        assert all(abs(a - b) <= 12 for a, b in zip(pixel, frame_color(index))), (pixel, index)


def test_raw_bytes_are_the_stored_media(reader_build: ReaderBuild) -> None:
    lines = _source_lines(reader_build.root)
    for sample in ShardDataset(str(reader_build.out), shuffle=False, decode_images=False):
        for data, path in zip(sample["images"], sample.get("image_paths", [])):
            assert data == (reader_build.root / path).read_bytes()
        if "video" in lines[int(sample["key"])]:
            assert all(isinstance(d, bytes) and d[:2] == b"\xff\xd8" for d in sample["images"])


def _run_rank(out: Path, rank: int, world: int, workers: int, **kwargs: Any) -> list[str]:
    from torch.utils.data import DataLoader

    ds = ShardDataset(str(out), rank=rank, world_size=world, decode_images=False,
                      transform=_key, **kwargs)  # fmt: skip
    if workers == 0:
        keys = list(ds)
    else:
        keys = list(DataLoader(ds, batch_size=None, num_workers=workers))
    assert len(keys) == len(ds)
    return keys


def _key(sample: dict[str, Any]) -> str:
    return str(sample["key"])


@pytest.mark.torch
@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_rank_yields_the_same_count(reader_build: ReaderBuild, world: int, workers: int) -> None:
    """Uneven shards (6, 6, 6, 2), up to 8 readers for 4 shards: counts stay equal."""
    for drop_last in (False, True):
        per_rank = [_run_rank(reader_build.out, r, world, workers, drop_last=drop_last, seed=3)
                    for r in range(world)]  # fmt: skip
        counts = {len(keys) for keys in per_rank}
        expected = SAMPLES // world if drop_last else -(-SAMPLES // world)
        assert counts == {expected}
        seen = Counter(k for keys in per_rank for k in keys)
        if SAMPLES % world == 0:  # every sample exactly once per epoch
            assert len(seen) == SAMPLES and set(seen.values()) == {1}
        elif drop_last:  # the tail of the epoch's order is left out
            assert len(seen) == expected * world and set(seen.values()) == {1}
        else:  # every sample at least once, the first few of the order twice
            assert len(seen) == SAMPLES and sum(seen.values()) == expected * world


def test_same_seed_and_epoch_give_the_same_order(reader_build: ReaderBuild) -> None:
    def order(seed: int, epoch: int, buffer: int = 8) -> list[str]:
        ds = ShardDataset(str(reader_build.out), seed=seed, shuffle_buffer=buffer,
                          decode_images=False, transform=_key)  # fmt: skip
        ds.set_epoch(epoch)
        return list(ds)

    first = order(0, 0)
    assert first == order(0, 0)
    assert sorted(first) == [f"{i:09d}" for i in range(SAMPLES)]
    assert first != order(0, 1) and first != order(1, 0)
    assert first != sorted(first)
    plain = ShardDataset(str(reader_build.out), shuffle=False, decode_images=False, transform=_key)
    assert list(plain) == sorted(first)


def test_len_follows_world_size(reader_build: ReaderBuild) -> None:
    assert len(ShardDataset(str(reader_build.out))) == SAMPLES
    assert len(ShardDataset(str(reader_build.out), rank=2, world_size=3)) == 7
    assert len(ShardDataset(str(reader_build.out), rank=2, world_size=3, drop_last=True)) == 6
    assert len(ShardDataset(str(reader_build.out), split="test")) == 1
    with pytest.raises(ReaderError, match="rank=3"):
        ShardDataset(str(reader_build.out), rank=3, world_size=3)
    with pytest.raises(ReaderError, match="both"):
        ShardDataset(str(reader_build.out), rank=0)


# -- corrupt data ---------------------------------------------------------------------


def _copy_output(build: ReaderBuild, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(build.out, out)
    return out


def _members(shard: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(shard) as tar:
        return tar.getmembers()


def _overwrite_member(shard: Path, name_end: str, data: bytes) -> str:
    """Overwrite the first member whose name ends with ``name_end``; returns its key."""
    member = next(m for m in _members(shard) if m.name.endswith(name_end))
    raw = bytearray(shard.read_bytes())
    raw[member.offset_data : member.offset_data + member.size] = data[: member.size].ljust(member.size, b"x")
    shard.write_bytes(bytes(raw))
    return member.name.partition(".")[0]


def test_corrupt_samples_are_skipped_counted_or_raised(
    reader_build: ReaderBuild, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = _copy_output(reader_build, tmp_path)
    bad_image = _overwrite_member(out / "train-000000.tar", ".image1.jpg", b"not an image")
    bad_json = _overwrite_member(out / "train-000001.tar", ".json", b"{broken")
    ds = ShardDataset(str(out), shuffle=False, transform=_key)
    with caplog.at_level(logging.WARNING, logger="shardify.reader"):
        keys = list(ds)
    assert len(keys) == len(ds) == SAMPLES
    assert bad_image not in keys and bad_json not in keys
    assert ds.stats.skipped_samples == 2
    assert ds.stats.reasons == {"undecodable_sample": 2}
    assert sum("skipping a corrupt sample" in r.message for r in caplog.records) == 2
    with pytest.raises(ReaderError, match="does not decode"):
        list(ShardDataset(str(out), shuffle=False, on_error="raise"))


def test_truncated_shard_keeps_counts_equal(reader_build: ReaderBuild, tmp_path: Path) -> None:
    out = _copy_output(reader_build, tmp_path)
    shard = out / "train-000001.tar"
    members = _members(shard)
    cut = next(m for m in members if m.name.startswith(members[0].name[:9]) is False)
    shard.write_bytes(shard.read_bytes()[: cut.offset_data + cut.size // 2])  # mid-member
    datasets = [ShardDataset(str(out), rank=r, world_size=2, seed=5, transform=_key) for r in range(2)]
    per_rank = [list(ds) for ds in datasets]
    assert [len(keys) for keys in per_rank] == [10, 10]
    assert sum(ds.stats.reasons.get("corrupt_shard", 0) for ds in datasets) == SHARD_SIZES[1] - 1
    readable = {f"{i:09d}" for i in range(SAMPLES)}
    assert len(set(per_rank[0]) | set(per_rank[1])) == SAMPLES - (SHARD_SIZES[1] - 1)
    assert set(per_rank[0]) | set(per_rank[1]) <= readable
    with pytest.raises(ReaderError, match="corrupt shard"):
        list(ShardDataset(str(out), shuffle=False, on_error="raise"))


def test_missing_split_and_manifest_are_clear(reader_build: ReaderBuild, tmp_path: Path) -> None:
    from shardify import ManifestError

    with pytest.raises(ManifestError, match="no split 'valid'"):
        ShardDataset(str(reader_build.out), split="valid")
    with pytest.raises(ManifestError, match="not found"):
        ShardDataset(str(tmp_path))


def test_read_errors_are_retried(reader_build: ReaderBuild, caplog: pytest.LogCaptureFixture) -> None:
    """A filesystem whose connections drop after 3000 bytes the first time a shard is opened."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    class FlakyFileSystem(LocalFileSystem):
        protocol = "flaky"
        opened: Counter[str] = Counter()

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            handle = super()._open(path, mode, **kwargs)
            FlakyFileSystem.opened[path] += 1
            if path.endswith(".tar") and FlakyFileSystem.opened[path] == 1:
                return _FailingReader(handle, after=3000)
            return handle

    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    ds = ShardDataset(f"flaky://{reader_build.out}", shuffle=False, transform=_key)
    with caplog.at_level(logging.WARNING):
        keys = list(ds)
    assert keys == [f"{i:09d}" for i in range(SAMPLES)] and ds.stats.skipped_samples == 0
    retried = {r.message.split(":")[1] for r in caplog.records if "retry" in r.message}
    assert len(retried) == len(SHARD_SIZES), caplog.text


class _FailingReader(io.RawIOBase):
    """Reads through ``handle`` and raises ConnectionResetError after ``after`` bytes."""

    def __init__(self, handle: Any, after: int) -> None:
        self.handle, self.left = handle, after

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("connection reset by peer (test)")
        data = self.handle.read(size if size >= 0 else self.left)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()
        super().close()


def test_state_is_json(reader_build: ReaderBuild) -> None:
    ds = ShardDataset(str(reader_build.out), decode_images=False)
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(ds.state_dict()))
    assert state["consumed"] == {"0": 5} and state["epoch"] == 0


def test_runaway_skipping_raises_instead_of_repeating_one_sample(reader_build: ReaderBuild, tmp_path: Path) -> None:
    """A truncated shard makes a run of corrupt samples; past the bound the reader raises."""
    out = _copy_output(reader_build, tmp_path)
    shard = out / "train-000001.tar"
    members = _members(shard)
    cut = next(m for m in members if m.name.startswith(members[0].name[:9]) is False)
    shard.write_bytes(shard.read_bytes()[: cut.offset_data + cut.size // 2])
    run = SHARD_SIZES[1] - 1  # corrupt samples in a row when read in order
    tolerant = ShardDataset(str(out), shuffle=False, transform=_key)
    tolerant.max_consecutive_skips = run
    assert len(list(tolerant)) == SAMPLES  # exactly at the bound: still substituted
    strict = ShardDataset(str(out), shuffle=False, transform=_key)
    strict.max_consecutive_skips = run - 1
    with pytest.raises(ReaderError, match=f"{run} corrupt samples in a row"):
        list(strict)


def test_fewer_shards_than_reader_parts_is_warned_once(reader_build: ReaderBuild,
                                                      caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from shardify.reader import dataset as module

    module._warned_few.clear()
    shards = len(ShardDataset(str(reader_build.out)).shards)
    many = ShardDataset(str(reader_build.out), shuffle=True, rank=0, world_size=shards)  # shards x 2 parts
    with caplog.at_level(logging.WARNING, logger="shardify.reader.dataset"):
        next(iter(many.iter_part(0, 2)))
        next(iter(many.iter_part(0, 2)))  # once per process, not per epoch
        ok = ShardDataset(str(reader_build.out), shuffle=True, rank=0, world_size=1)
        next(iter(ok.iter_part(0, 1)))
    warned = [r.getMessage() for r in caplog.records if "reader part stays within" in r.getMessage()]
    assert warned == [f"{shards} shard(s) for {shards} rank(s) x 2 worker(s): each reader part stays "
                      "within the same shard(s) every epoch, so it sees mostly the same samples "
                      f"(shuffled); rebuild with a smaller shard.max_samples for at least {4 * shards} shards"]
