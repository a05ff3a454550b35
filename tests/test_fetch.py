"""The fetch stage: reads run ahead with bounded concurrency and bytes, results come in
order whatever finishes first, per-file problems stay with their medium, store errors are
raised where the serial read would raise them, temporary copies are always removed; a
build reads concurrently and gives the same bytes at concurrency 1 and N, locally and on S3
at 30 ms to first byte."""

from __future__ import annotations

import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardify.config import load_config
from shardify.datagen import DatasetSpec, chat, image_item, make_dataset, text_item
from shardify.errors import MediaError, StorageError
from shardify.fetch import Fetched, Medium, prefetch, release
from shardify.pipeline import build
from shardify.rejects import MISSING_FILE
from shardify.storage import Location
from tests.fixtures.ray import output_files


class _Recorder:
    """A fake fetch: sleeps a random while, records the reads in flight and bytes held."""

    def __init__(self, size: int = 100, seed: int = 0) -> None:
        self.size = size
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def __call__(self, source: Location, medium: Medium) -> Fetched:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            delay = self.rng.random() * 0.004
        time.sleep(delay)
        with self.lock:
            self.running -= 1
        if medium.path.startswith("missing"):
            return Fetched(medium, error=MediaError(MISSING_FILE, f"{medium.path} not found"))
        if medium.path.startswith("outage"):
            raise StorageError(f"{medium.path}: the store is down")
        return Fetched(medium, data=medium.path.encode().ljust(self.size, b"."))


def _media(paths: list[str], limit: int | None = None) -> Any:
    return lambda i: [Medium(f"{paths[i]}-{j}", f"images[{j}]", i + 1, max_bytes=limit) for j in range(2)]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 16), st.integers(0, 1000))
def test_results_come_in_order_with_bounded_concurrency(items: int, concurrency: int, seed: int) -> None:
    fetch = _Recorder(seed=seed)
    paths = [f"f{i}" for i in range(items)]
    got = []
    for item, futures in prefetch(Location("/"), range(items), _media(paths), concurrency=concurrency,
                                  max_bytes=10**9, fetch=fetch):  # fmt: skip
        got.append((item, [f.result().data[:8].rstrip(b".") for f in futures]))
    assert got == [(i, [f"f{i}-0".encode(), f"f{i}-1".encode()]) for i in range(items)]
    assert fetch.max_running <= concurrency


def test_reads_run_ahead_while_the_consumer_works() -> None:
    fetch = _Recorder()
    stream = prefetch(Location("/"), range(40), _media([str(i) for i in range(40)]), concurrency=8,
                      max_bytes=10**9, fetch=fetch)  # fmt: skip
    for _item, futures in stream:
        time.sleep(0.002)  # a check (decode) that takes a while
        release(futures)
    assert fetch.max_running >= 4


def test_bytes_held_ahead_are_bounded() -> None:
    """No new item starts while fetched, unconsumed media hold more than max_bytes: what is
    held stays within the limit plus the reads already in flight, far below the window."""
    size, limit, concurrency = 1000, 5000, 32
    fetch = _Recorder(size=size)
    held = 0
    peak = 0
    lock = threading.Lock()

    def counting(source: Location, medium: Medium) -> Fetched:
        nonlocal held, peak
        fetched = fetch(source, medium)
        with lock:
            held += fetched.nbytes
            peak = max(peak, held)
        return fetched

    stream = prefetch(Location("/"), range(60), _media([str(i) for i in range(60)], limit=size),
                      concurrency=concurrency, max_bytes=limit, fetch=counting)  # fmt: skip
    for _item, futures in stream:
        time.sleep(0.003)  # a slow check: every running read finishes meanwhile (worst case)
        with lock:
            held -= sum(f.result().nbytes for f in futures)
    assert peak <= limit + 2 * size < concurrency * size  # below what the reads in flight could hold
    assert held == 0


def test_per_file_problems_stay_with_their_medium_and_store_errors_surface_in_order() -> None:
    paths = ["a", "missing", "b", "outage", "c"]
    stream = prefetch(Location("/"), range(5), _media(paths), concurrency=8, max_bytes=10**9,
                      fetch=_Recorder())  # fmt: skip
    seen = []
    with pytest.raises(StorageError, match="outage-0: the store is down"):
        for item, futures in stream:
            fetched = futures[0].result()
            seen.append((item, fetched.error.code if fetched.error else "ok"))
    assert seen == [(0, "ok"), (1, MISSING_FILE), (2, "ok")]  # item 4 was never handed out


def test_temporary_copies_are_removed_when_the_consumer_stops_early(tmp_path: Path) -> None:
    def copying(source: Location, medium: Medium) -> Fetched:
        path = tmp_path / f"{medium.path}.tmp"
        path.write_bytes(b"x")
        return Fetched(medium, file=str(path), temporary=True)

    stream = prefetch(Location("/"), range(30), _media([str(i) for i in range(30)]), concurrency=8,
                      max_bytes=10**9, fetch=copying)  # fmt: skip
    for item, futures in stream:
        release(futures)
        if item == 3:
            break
    stream.close()
    assert list(tmp_path.iterdir()) == []


# -- builds --

BAD = [orjson.dumps({"messages": chat([image_item(), text_item("?")], "x"), "images": ["images/gone.jpg"]}).decode()]


@pytest.fixture(scope="module")
def images_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = DatasetSpec(image_samples=30, images_per_sample=2, video_samples=2, text_samples=3,
                       test_split=False, extra_lines=BAD)  # fmt: skip
    return make_dataset(tmp_path_factory.mktemp("fetch") / "ds", spec)


def _files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in output_files(out)}


def test_local_builds_are_identical_at_any_concurrency(images_root: Path, tmp_path: Path) -> None:
    outputs = []
    for concurrency in (1, 3, 32):
        out = tmp_path / f"out-{concurrency}"
        build(load_config({"input": str(images_root), "output": str(out), "shard": {"max_samples": 7},
                           "executor": {"kind": "local"}, "io": {"max_concurrency": concurrency,
                                                               "max_bytes_in_flight": 50_000}}))  # fmt: skip
        outputs.append(_files(out))
    assert outputs[0] == outputs[1] == outputs[2]
    rejects = [orjson.loads(r) for r in outputs[0]["rejects.jsonl"].splitlines()]
    assert [r["reason"] for r in rejects] == [MISSING_FILE]


@pytest.mark.s3
@pytest.mark.slow
def test_s3_builds_read_concurrently_and_are_identical(images_root: Path, tmp_path: Path, s3_server: Any,
                                                       s3_bucket: str, slow_s3: Any) -> None:  # fmt: skip
    """Through a proxy holding every response 30 ms: concurrency 1 reads one object at a time,
    the default reads many; both give the local build's shards, and a missing object stays
    missing_file."""
    from tests.fixtures.s3 import get_object, list_keys, upload_tree

    upload_tree(s3_server, images_root, s3_bucket, "ds")
    copies_before = set(Path(tempfile.gettempdir()).glob("shardify-video-*"))
    local = tmp_path / "local"
    build(load_config({"input": str(images_root), "output": str(local), "shard": {"max_samples": 7},
                       "executor": {"kind": "local"}}))  # fmt: skip
    seen = {}
    for concurrency in (1, None):
        slow_s3.max_in_flight = 0
        prefix = f"out-{concurrency}"
        build(load_config({"input": f"s3://{s3_bucket}/ds", "output": f"s3://{s3_bucket}/{prefix}",
                           "shard": {"max_samples": 7}, "executor": {"kind": "local"},
                           "storage_options": {"endpoint_url": slow_s3.endpoint},
                           "io": {"max_concurrency": concurrency}}))  # fmt: skip
        seen[concurrency] = slow_s3.max_in_flight
        shards = [k for k in list_keys(s3_server, s3_bucket, prefix) if k.endswith(".tar")]
        assert shards == sorted(p.name for p in local.glob("*.tar"))
        for name in shards:
            assert get_object(s3_server, s3_bucket, f"{prefix}/{name}") == (local / name).read_bytes(), name
        rejects = get_object(s3_server, s3_bucket, f"{prefix}/rejects.jsonl").splitlines()
        assert [orjson.loads(r)["reason"] for r in rejects] == [MISSING_FILE]
    assert seen[1] <= 2 and seen[None] >= 8, seen  # 2: the planner streams the JSONL meanwhile
    assert set(Path(tempfile.gettempdir()).glob("shardify-video-*")) <= copies_before  # copies removed
