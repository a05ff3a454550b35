"""Read-ahead (issue 14): the coming shards are fetched with concurrent ranged GETs while the
current one is decoded, in bounded memory, and the samples are exactly those of the plain
one-shard-after-another read: locally, on S3 (moto), through the latency proxy, under
injected faults, after a resume and under forked DataLoader workers.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from shardify import ReaderError, ShardDataset
from shardify.reader.readahead import DEFAULT_REMOTE_BYTES, Piece, ReadAhead
from shardify.storage import Location
from tests.fixtures.reader import SAMPLES, SHARD_SIZES, ReaderBuild, loader_order
from tests.fixtures.s3 import FaultProxy, S3Server, upload_tree

SMALL_RANGE = 4096
"""Range size that cuts the small test shards (10-50 KiB) into several GETs each."""


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob("train-*.tar"))


def _dataset(url: str, prefetch: int, *, range_bytes: int = SMALL_RANGE, **kwargs: Any) -> ShardDataset:
    kwargs.setdefault("decode_images", False)  # samples hold the stored bytes: compared exactly
    ds = ShardDataset(url, prefetch_bytes=prefetch, **kwargs)
    ds.prefetch_range_bytes = range_bytes
    return ds


def _readahead_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("shardify-readahead")]


# -- the read-ahead itself ---------------------------------------------------------------


def test_pieces_read_back_as_the_files_bytes(reader_build: ReaderBuild) -> None:
    paths = _shards(reader_build.out)
    location = Location(str(reader_build.out))
    pieces = [Piece(p.name, p.stat().st_size) for p in paths]
    with ReadAhead(location, pieces, max_bytes=3 * SMALL_RANGE, range_bytes=SMALL_RANGE) as ahead:
        for index, path in enumerate(paths):
            with ahead.open(index) as handle:
                assert handle.read() == path.read_bytes()
        stats = ahead.stats
    assert stats.requests == sum(-(-p.size // SMALL_RANGE) for p in pieces)
    assert 0 < stats.peak_bytes <= 3 * SMALL_RANGE
    assert stats.fetched_bytes == sum(p.size for p in pieces)
    assert _readahead_threads() == []  # close() stopped them


def test_memory_never_passes_the_limit_however_slow_the_reader(reader_build: ReaderBuild) -> None:
    """The reader sleeps between reads, so the threads run into the limit many times."""
    paths = _shards(reader_build.out)
    held: list[int] = []
    location = Location(str(reader_build.out))
    pieces = [Piece(p.name, p.stat().st_size) for p in paths]
    limit = 5 * 1024  # not a multiple of the range: ranges are cut at min(range, limit)
    ahead = ReadAhead(location, pieces, max_bytes=limit, range_bytes=2048, requests=4)
    with ahead:
        for index in range(len(paths)):
            with ahead.open(index) as handle:
                while handle.read(1024):
                    held.append(ahead._held)
                    time.sleep(0.001)
    assert max(held) <= limit and ahead.stats.peak_bytes <= limit
    assert ahead.stats.peak_bytes >= 2 * 2048  # it did run ahead of the reader


def test_the_next_shard_is_fetched_while_the_current_one_is_read(reader_build: ReaderBuild) -> None:
    events: list[tuple[str, str]] = []
    location = Location(str(reader_build.out))

    def fetch(name: str, start: int, end: int) -> bytes:
        events.append(("get", name))
        return location.read_range(name, start, end)

    paths = _shards(reader_build.out)
    pieces = [Piece(p.name, p.stat().st_size) for p in paths]
    with ReadAhead(location, pieces, max_bytes=1 << 20, fetch=fetch) as ahead:
        for index, path in enumerate(paths):
            with ahead.open(index) as handle:
                events.append(("open", path.name))
                time.sleep(0.05)  # decoding
                handle.read()
    for path in paths[1:]:
        assert events.index(("get", path.name)) < events.index(("open", path.name))


def test_a_shard_left_early_gives_its_bytes_back(reader_build: ReaderBuild) -> None:
    paths = _shards(reader_build.out)
    location = Location(str(reader_build.out))
    pieces = [Piece(p.name, p.stat().st_size) for p in paths]
    ahead = ReadAhead(location, pieces, max_bytes=2 * SMALL_RANGE, range_bytes=SMALL_RANGE)
    with ahead:
        with ahead.open(0) as handle:
            handle.read(100)  # then moves on, as the last segment of a worker's part does
        for index in range(1, len(paths)):
            with ahead.open(index) as handle:
                assert handle.read() == paths[index].read_bytes()
    assert ahead._held == 0


# -- the same samples as the plain read --------------------------------------------------


@pytest.mark.parametrize("options", [
    {"shuffle": False},
    {"seed": 3, "shuffle_buffer": 5},
    {"seed": 4, "rank": 1, "world_size": 3},
    {"seed": 5, "rank": 0, "world_size": 2, "drop_last": True},
])  # fmt: skip
@pytest.mark.parametrize("parts", [1, 3])
def test_local_samples_are_identical_with_read_ahead(reader_build: ReaderBuild, options: dict[str, Any],
                                                     parts: int) -> None:  # fmt: skip
    url = str(reader_build.out)
    for part in range(parts):
        plain = list(_dataset(url, 0, **options).iter_part(part, parts))
        ahead = _dataset(url, 3 * SMALL_RANGE, **options)
        assert list(ahead.iter_part(part, parts)) == plain
        assert ahead.prefetch_stats.requests > 0 and ahead.prefetch_stats.peak_bytes <= 3 * SMALL_RANGE


def test_decoded_samples_are_identical_with_read_ahead(reader_build: ReaderBuild) -> None:
    url = str(reader_build.out)
    plain = list(ShardDataset(url, seed=2, prefetch_bytes=0))
    ahead = list(ShardDataset(url, seed=2, prefetch_bytes=64 << 20))
    assert [s["key"] for s in ahead] == [s["key"] for s in plain]
    for a, b in zip(ahead, plain):
        assert [i.tobytes() for i in a["images"]] == [i.tobytes() for i in b["images"]]
        assert {k: v for k, v in a.items() if k != "images"} == {k: v for k, v in b.items() if k != "images"}


@pytest.mark.parametrize("taken", [1, 7, 13])
def test_resume_with_read_ahead_continues_exactly(reader_build: ReaderBuild, taken: int) -> None:
    url = str(reader_build.out)
    full = list(_dataset(url, 0, seed=9, shuffle_buffer=4))
    ds = _dataset(url, 2 * SMALL_RANGE, seed=9, shuffle_buffer=4)
    it = iter(ds)
    head = [next(it) for _ in range(taken)]
    state = ds.state_dict()
    del it
    resumed = _dataset(url, 2 * SMALL_RANGE, seed=9, shuffle_buffer=4)
    resumed.load_state_dict(state)
    assert head + list(resumed) == full


def test_stopping_early_stops_the_threads(reader_build: ReaderBuild) -> None:
    it = iter(_dataset(str(reader_build.out), 4 * SMALL_RANGE))
    next(it)
    assert _readahead_threads()
    it.close()  # type: ignore[attr-defined]
    assert _readahead_threads() == []


def test_truncated_shard_reads_the_same_with_read_ahead(reader_build: ReaderBuild, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reader_build.out, out)
    shard = out / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[: 15000])  # the manifest still lists the whole size
    results = []
    for prefetch in (0, 2 * SMALL_RANGE):
        ds = _dataset(str(out), prefetch, shuffle=False, transform=lambda s: s["key"])
        results.append((list(ds), dict(ds.stats.reasons)))
    assert results[0] == results[1]
    assert results[0][1]["corrupt_shard"] >= 1 and len(results[0][0]) == SAMPLES


def test_read_errors_under_read_ahead_are_retried(reader_build: ReaderBuild, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GET of one range of every shard fails (past the storage layer's retries): the tar
    reader reopens the shard, reads the ranges it had again and gets the same samples."""
    from shardify.errors import StorageError

    url = str(reader_build.out)
    plain = list(_dataset(url, 0, seed=1))
    ds = _dataset(url, 3 * SMALL_RANGE, seed=1)
    real = ds.location.read_range
    failed: set[str] = set()

    def flaky(name: str, start: int, end: int) -> bytes:
        if start == 2 * SMALL_RANGE and name not in failed:
            failed.add(name)
            raise StorageError(f"{name}: cannot read: connection reset (test)")
        return real(name, start, end)

    monkeypatch.setattr(ds.location, "read_range", flaky)
    monkeypatch.setattr("shardify.reader.stream.time.sleep", lambda s: None)  # no backoff wait
    assert list(ds) == plain
    assert failed == {p.name for p in _shards(reader_build.out)}
    assert ds.stats.retries == len(SHARD_SIZES) and ds.stats.skipped_samples == 0
    assert ds.prefetch_stats.direct_requests >= 2 * len(SHARD_SIZES)  # ranges 0 and 1 again


def test_prefetch_is_off_by_default_for_local_paths_and_checked(reader_build: ReaderBuild) -> None:
    assert ShardDataset(str(reader_build.out)).prefetch_bytes == 0
    with pytest.raises(ReaderError, match="prefetch_bytes=-1"):
        ShardDataset(str(reader_build.out), prefetch_bytes=-1)


# -- S3 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_url(s3_server: S3Server, reader_build: ReaderBuild) -> str:
    bucket = f"ahead-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    upload_tree(s3_server, reader_build.out, bucket, "out")
    return f"s3://{bucket}/out"


def _through(proxy: FaultProxy) -> dict[str, Any]:
    return {"endpoint_url": proxy.endpoint}


def _read_via(proxy: FaultProxy, url: str, prefetch: int, **kwargs: Any) -> list[Any]:
    ds = _dataset(url, prefetch, storage_options=_through(proxy), **kwargs)
    proxy.log.clear()
    proxy.max_in_flight = 0
    return list(ds)


@pytest.mark.s3
def test_s3_default_is_on_and_samples_are_identical(s3_url: str, s3_server: S3Server) -> None:
    plain = list(_dataset(s3_url, 0, seed=6, storage_options=s3_server.options))
    ds = ShardDataset(s3_url, seed=6, decode_images=False, storage_options=s3_server.options)
    assert ds.prefetch_bytes == DEFAULT_REMOTE_BYTES
    assert list(ds) == plain
    assert ds.prefetch_stats.requests == len(SHARD_SIZES)  # one 8 MiB range holds a small shard


@pytest.mark.s3
@pytest.mark.slow
def test_slow_s3_reads_concurrently_without_head_requests(s3_url: str, slow_s3: FaultProxy) -> None:
    plain = _read_via(slow_s3, s3_url, 0, seed=8)
    assert slow_s3.max_in_flight == 1  # one shard after another
    ahead = _read_via(slow_s3, s3_url, 4 * SMALL_RANGE, seed=8)
    assert ahead == plain
    assert slow_s3.max_in_flight > 1
    methods = {method for method, _ in slow_s3.log}
    assert methods == {"GET"}, slow_s3.log  # sizes come from the manifest: no HEAD


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["503", "500", "drop_before", "drop_after", "cut_body"])
def test_faults_under_read_ahead_give_the_same_samples(s3_url: str, fault_proxy: FaultProxy,
                                                       s3_server: S3Server, fault: str) -> None:  # fmt: skip
    plain = list(_dataset(s3_url, 0, seed=2, storage_options=s3_server.options))
    ds = _dataset(s3_url, 3 * SMALL_RANGE, seed=2, storage_options=_through(fault_proxy))
    fault_proxy.fail_next(3, fault)
    assert list(ds) == plain
    assert fault_proxy.counts[fault] == 3 and ds.stats.skipped_samples == 0


@pytest.mark.s3
@pytest.mark.slow
def test_random_faults_under_read_ahead_give_the_same_samples(s3_url: str, fault_proxy: FaultProxy,
                                                              s3_server: S3Server) -> None:  # fmt: skip
    plain = list(_dataset(s3_url, 0, seed=3, storage_options=s3_server.options))
    fault_proxy.fail_rate = 0.2
    ds = _dataset(s3_url, 3 * SMALL_RANGE, seed=3, storage_options=_through(fault_proxy))
    assert list(ds) == plain
    assert sum(fault_proxy.counts[f] for f in FaultProxy.FAULTS) > 0


# -- DataLoader workers ------------------------------------------------------------------


def _key_and_threads(sample: dict[str, Any]) -> tuple[str, int, bool]:
    """The sample's key, the process that read it, and whether it ran read-ahead threads."""
    return str(sample["key"]), os.getpid(), bool(_readahead_threads())


@pytest.mark.s3
@pytest.mark.torch
@pytest.mark.slow
def test_forked_dataloader_workers_read_ahead_in_their_own_process(s3_url: str, s3_server: S3Server) -> None:
    torch = pytest.importorskip("torch")

    def make(prefetch: int, transform: Callable[[dict[str, Any]], Any]) -> ShardDataset:
        return _dataset(s3_url, prefetch, seed=4, storage_options=s3_server.options, transform=transform)

    ds = make(3 * SMALL_RANGE, _key_and_threads)
    assert ds.location.exists("manifest.json")  # the parent used its client before the fork
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    rows = list(loader)
    assert _readahead_threads() == []  # never started in the parent
    reference = loader_order(make(0, lambda s: str(s["key"])), workers=2, batch_size=1)
    assert [key for key, _, _ in rows] == reference
    assert len({pid for _, pid, _ in rows}) == 2 and os.getpid() not in {pid for _, pid, _ in rows}
    firsts = {pid: threads for _, pid, threads in reversed(rows)}  # each worker's first sample
    assert all(firsts.values())  # its threads were running (they end once every GET is made)


@pytest.mark.s3
@pytest.mark.slow
def test_s3_truncated_shard_reads_the_same_with_read_ahead(reader_build: ReaderBuild, s3_server: S3Server,
                                                           tmp_path: Path) -> None:  # fmt: skip
    """Ranges past the end of a shard shorter than the manifest says (S3 answers 416) do not
    turn a corrupt shard into a read error."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reader_build.out, out)
    shard = out / "train-000002.tar"
    shard.write_bytes(shard.read_bytes()[:15000])
    bucket = f"cut-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    upload_tree(s3_server, out, bucket, "out")
    results = []
    for prefetch in (0, 2 * SMALL_RANGE):
        ds = _dataset(f"s3://{bucket}/out", prefetch, shuffle=False, storage_options=s3_server.options,
                      transform=lambda s: s["key"])  # fmt: skip
        results.append((list(ds), dict(ds.stats.reasons), ds.stats.retries))
    assert results[0] == results[1]
    assert results[0][1]["corrupt_shard"] >= 1 and results[0][2] == 0


@pytest.mark.s3
@pytest.mark.torch
@pytest.mark.slow
def test_plain_loader_resume_on_s3_with_read_ahead(s3_url: str, s3_server: S3Server) -> None:
    """state_after over forked workers, then a new loader: the rest of the epoch exactly."""
    torch = pytest.importorskip("torch")

    def make() -> ShardDataset:
        ds = _dataset(s3_url, 3 * SMALL_RANGE, seed=11, shuffle_buffer=3, storage_options=s3_server.options,
                      transform=lambda s: str(s["key"]))  # fmt: skip
        ds.set_epoch(1)
        return ds

    def loader(ds: ShardDataset) -> Any:
        return torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list,
                                           multiprocessing_context="fork")  # fmt: skip

    full = list(loader(make()))
    ds = make()
    first = loader(ds)
    it = iter(first)
    head = [next(it) for _ in range(3)]
    state = ds.state_after(3, first)
    del it
    restored = make()
    restored.load_state_dict(state)
    assert head + list(loader(restored)) == full
