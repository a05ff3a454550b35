"""Location on moto's real S3 server: atomic writes, listings, fresh existence checks,
retries of transient faults (through the fault proxy), resuming reads, one-line errors."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from shardify import storage
from shardify.errors import AccessError, StorageError
from shardify.storage import Location
from tests.fixtures.s3 import FaultProxy, S3Server, get_object, list_keys

pytestmark = pytest.mark.s3


def test_write_read_list_delete_round_trip(s3_server: S3Server, s3_bucket: str) -> None:
    out = Location(f"s3://{s3_bucket}/out", s3_server.options)
    out.check_writable()  # the prefix does not exist yet: fine, the bucket does
    out.write_bytes("_shardify/build.json", b"{}")
    out.write_bytes("_shardify/done/train-000000.tar.json", b"{}")
    data = os.urandom(70_000)
    staging = out.staging_path("train-000000.tar")
    with open(staging, "wb") as handle:
        handle.write(data)
    out.put_file(staging, "train-000000.tar")

    assert not os.path.exists(staging)
    assert out.list_names() == ["_shardify", "train-000000.tar"]
    assert out.list_names("train") == ["train-000000.tar"]
    assert out.isfile("train-000000.tar") and out.size("train-000000.tar") == len(data)
    assert out.exists("_shardify") and not out.isfile("_shardify")
    assert out.read_bytes("train-000000.tar") == data
    assert out.read_range("train-000000.tar", 100, 5000) == data[100:5000]
    out.delete("_shardify")  # a "folder": every object below the prefix
    assert list_keys(s3_server, s3_bucket, "out") == ["train-000000.tar"]
    out.delete("_shardify")  # already gone: not an error
    assert not out.exists("_shardify")
    out.check_readable()


def test_a_multipart_upload_appears_only_when_complete(
    s3_server: S3Server, s3_bucket: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part is uploaded and the completing request is held back: nothing is visible."""
    monkeypatch.setattr(storage, "UPLOAD_PART_BYTES", 5 << 20)
    out = Location(f"s3://{s3_bucket}/out", {"endpoint_url": fault_proxy.endpoint})
    data = os.urandom((11 << 20) + 123)
    staging = out.staging_path("train-000000.tar")
    with open(staging, "wb") as handle:
        handle.write(data)
    fault_proxy.stall = lambda method, path: method == "POST" and "uploadId=" in path
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            out.put_file(staging, "train-000000.tar")
        except BaseException as exc:  # re-raised by the test thread below
            errors.append(exc)

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        assert fault_proxy.stalled.wait(60), "the upload never tried to complete"
        assert len([p for m, p in fault_proxy.log if m == "PUT" and "partNumber=" in p]) == 3
        assert list_keys(s3_server, s3_bucket, "out") == []
    finally:
        fault_proxy.stall = None
        fault_proxy.release()  # the held request is dropped; the client retries it
        worker.join(60)
    assert not errors, errors
    assert get_object(s3_server, s3_bucket, "out/train-000000.tar") == data
    assert not os.path.exists(staging)


def test_existence_checks_and_listings_are_never_stale(s3_server: S3Server, s3_bucket: str) -> None:
    """s3fs caches listings; another process (a Ray worker, an earlier run) writes behind it."""
    out = Location(f"s3://{s3_bucket}/out", s3_server.options)
    out.write_bytes("a.json", b"1")
    assert out.list_names() == ["a.json"] and not out.exists("b.json")
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="out/b.json", Body=b"2")
    client.delete_object(Bucket=s3_bucket, Key="out/a.json")
    assert out.exists("b.json") and out.isfile("b.json")
    assert not out.exists("a.json")
    assert out.list_names() == ["b.json"]


def test_iter_lines_streams_every_line_with_its_offset(s3_server: S3Server, s3_bucket: str) -> None:
    lines = [f'{{"i": {i}, "pad": "{"x" * (i % 50)}"}}\n'.encode() for i in range(3000)]
    lines.append(b'{"last": "no newline"}')
    s3_server.client().put_object(Bucket=s3_bucket, Key="ds/train.jsonl", Body=b"".join(lines))
    source = Location(f"s3://{s3_bucket}/ds", s3_server.options)
    got = list(source.iter_lines("train.jsonl"))
    assert [raw for _, raw in got] == lines
    assert [offset for offset, _ in got] == [sum(map(len, lines[:i])) for i in range(len(lines))]


@pytest.fixture
def bare(s3_server: S3Server, s3_bucket: str, fault_proxy: FaultProxy,
         monkeypatch: pytest.MonkeyPatch) -> Location:  # fmt: skip
    """A Location through the fault proxy whose S3 client does not retry at all, so every
    injected fault reaches shardify's own retry layer."""
    monkeypatch.setattr(storage, "RETRY_BASE_S", 0.01)
    options: dict[str, Any] = {
        "endpoint_url": fault_proxy.endpoint,
        "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}},
    }
    location = Location(f"s3://{s3_bucket}/data", options)
    location.fs.retries = 1  # s3fs's own retry loop: one attempt
    return location


def test_every_call_survives_faults_the_client_gives_up_on(bare: Location, fault_proxy: FaultProxy) -> None:
    """Each call meets two faults in a row (every kind in turn) and still succeeds."""
    faults = itertools.cycle(FaultProxy.FAULTS)

    def fail_next_two() -> None:
        fault_proxy.fail_next(1, next(faults))
        fault_proxy.fail_next(1, next(faults))

    payload = os.urandom(200_000)
    calls = [
        lambda: bare.write_bytes("blob", payload),
        lambda: bare.read_bytes("blob") == payload,
        lambda: bare.read_range("blob", 10, 90_000) == payload[10:90_000],
        lambda: bare.isfile("blob"),
        lambda: bare.size("blob") == len(payload),
        lambda: bare.list_names() == ["blob"],
    ]
    for call in calls:
        fail_next_two()
        assert call() is not False
    staging = bare.staging_path("shard.tar")
    with open(staging, "wb") as handle:
        handle.write(payload)
    fail_next_two()
    bare.put_file(staging, "shard.tar")
    fail_next_two()
    bare.delete("blob")
    assert sorted(bare.fs.ls(bare.root, detail=False)) == [f"{bare.root}/shard.tar"]
    assert bare.fs.cat_file(f"{bare.root}/shard.tar") == payload
    assert sum(fault_proxy.counts[f] for f in FaultProxy.FAULTS) == 2 * (len(calls) + 2)


def test_read_handle_resumes_where_the_stream_was_cut(bare: Location, fault_proxy: FaultProxy) -> None:
    payload = os.urandom(3_000_000)
    bare.write_bytes("video.mp4", payload)
    with bare.open("video.mp4", block_size=256 * 1024) as handle:
        head = handle.read(1000)
        fault_proxy.fail_next(3, "cut_body")
        handle.seek(500_000)
        middle = handle.read(600_000)
        fault_proxy.fail_next(2, "drop_before")
        handle.seek(0)
        whole = handle.read()
    assert head == payload[:1000] and middle == payload[500_000:1_100_000] and whole == payload
    assert fault_proxy.counts["cut_body"] == 3


def test_a_range_past_the_end_is_one_request_not_retried(s3_server: S3Server, s3_bucket: str,
                                                         fault_proxy: FaultProxy) -> None:  # fmt: skip
    """S3 answers 416 (s3fs: EINVAL); asking again cannot help (the reader's read-ahead meets
    it on a shard shorter than its manifest says)."""
    s3_server.client().put_object(Bucket=s3_bucket, Key="short.bin", Body=b"x" * 100)
    location = Location(f"s3://{s3_bucket}", {"endpoint_url": fault_proxy.endpoint})
    assert location.read_range("short.bin", 50, 200) == b"x" * 50  # a range running past: cut
    fault_proxy.log.clear()
    with pytest.raises(StorageError, match="not satisfiable"):
        location.read_range("short.bin", 200, 300)
    assert len(fault_proxy.log) == 1


def test_a_persistent_outage_is_an_error_never_a_missing_file(
    bare: Location, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 3)
    bare.write_bytes("image.jpg", b"\xff\xd8")
    fault_proxy.faults = ("503",)
    fault_proxy.fail_rate = 1.0
    for call in (lambda: bare.isfile("image.jpg"), lambda: bare.read_bytes("image.jpg")):
        with pytest.raises(StorageError) as info:
            call()
        assert "image.jpg" in str(info.value) and "\n" not in str(info.value)
    assert fault_proxy.counts["requests"] >= 2 * 3


def test_missing_bucket_is_one_clear_access_error(s3_server: S3Server, s3_bucket: str) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    for check in ("check_readable", "check_writable"):
        with pytest.raises(AccessError, match=f"bucket '{missing}' does not exist"):
            getattr(Location(f"s3://{missing}/ds", s3_server.options), check)()
    with pytest.raises(AccessError, match=f"s3://{s3_bucket}/nothing-here: does not exist"):
        Location(f"s3://{s3_bucket}/nothing-here", s3_server.options).check_readable()
    Location(f"s3://{s3_bucket}/nothing-here", s3_server.options).check_writable()


def test_bad_credentials_are_one_line_without_the_secret(s3_server: S3Server, s3_bucket: str,
                                                         s3_auth: dict[str, str]) -> None:  # fmt: skip
    good = Location(f"s3://{s3_bucket}", {**s3_server.options, **s3_auth, "skip_instance_cache": True})
    good.check_readable()
    good.check_writable()
    secret = f"wrong-secret-{uuid.uuid4().hex}"
    cases = [{"key": s3_auth["key"], "secret": secret},  # signature does not match
             {"key": "AKIA" + uuid.uuid4().hex[:16].upper(), "secret": secret}]  # unknown key  # fmt: skip
    for credentials in cases:
        options = {**s3_server.options, **credentials, "skip_instance_cache": True}
        for check in ("check_readable", "check_writable"):
            with pytest.raises(AccessError) as info:
                getattr(Location(f"s3://{s3_bucket}/ds", options), check)()
            message = str(info.value)
            assert "access denied" in message and "\n" not in message
            assert secret not in message and credentials["key"] not in message


def test_s3_media_above_the_size_limit_is_rejected_from_a_bounded_read(s3_server: S3Server) -> None:
    """On S3 the size limit costs one ranged GET of at most limit + 1 bytes, never the object."""
    from shardify.errors import MediaError
    from shardify.mediafiles import read_media

    bucket = f"big-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="ds/big.jpg", Body=b"\xff" * 100_000)
    client.put_object(Bucket=bucket, Key="ds/small.jpg", Body=b"\xff" * 1000)
    root = Location(f"s3://{bucket}/ds", s3_server.options)
    assert read_media(root, "small.jpg", "images[0]", max_bytes=1000) == b"\xff" * 1000
    with pytest.raises(MediaError) as info:
        read_media(root, "big.jpg", "images[0]", max_bytes=1000)
    assert info.value.code == "file_too_large" and "100000 bytes" in info.value.detail
    with pytest.raises(MediaError) as missing:
        read_media(root, "nope.jpg", "images[0]", max_bytes=1000)
    assert missing.value.code == "missing_file"


def test_missing_credentials_fail_at_once_with_the_fix(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """No credentials anywhere: exit 2 with one line saying where to put them, no retries."""
    import json
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "shardify", "inspect", f"s3://{s3_bucket}/out",
                           "--storage-options", json.dumps(s3_server.options)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no usable credentials (NoCredentialsError)" in lines[0]
    assert "retry" not in done.stderr
    assert elapsed < 30  # was ~7 s of retries; here only start-up, never the backoff schedule
