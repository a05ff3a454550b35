"""S3 -> S3 builds through the real CLI against moto's S3 server: byte-identical to a local
build, verified, streamed by the reader, resilient to a faulty network and to kill -9
mid-upload, and one clear line (exit 2, nothing written) for a missing bucket or bad
credentials. Credentials never show up in output, logs or written objects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardify.datagen import DatasetSpec, chat, image_item, make_dataset, text_item
from tests.conftest import run_cli, write_config
from tests.fixtures.s3 import FaultProxy, S3Server, get_object, list_keys, upload_tree

pytestmark = [pytest.mark.s3, pytest.mark.slow]

# moto accepts any credentials unless told otherwise: these must never appear anywhere.
SECRET = {"key": "AKIASHOULDNEVERLEAK01", "secret": "never-print-this-secret-0123456789"}
BAD_LINES = [
    "{not json",
    orjson.dumps({"messages": chat([image_item(), text_item("?")], "x"), "images": ["images/nope.jpg"]}).decode(),
    orjson.dumps({"messages": chat([image_item()], "x"), "images": ["../outside.jpg"]}).decode(),
]
SHARD = {"max_samples": 4}


@dataclass(frozen=True)
class Reference:
    """A dataset and its local build (the bytes every S3 build must reproduce)."""

    root: Path
    files: dict[str, bytes]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    work = tmp_path_factory.mktemp("reference")
    spec = DatasetSpec(image_samples=10, video_samples=3, text_samples=3, extra_lines=BAD_LINES)
    root = make_dataset(work / "ds", spec)
    out = work / "out"
    cfg = write_config(work / "local.yaml", input=str(root), output=str(out), shard=SHARD,
                       executor={"kind": "local"})  # fmt: skip
    result = run_cli("build", str(cfg))
    assert result.returncode == 0, result.stderr
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sum(name.endswith(".tar") for name in files) >= 4
    return Reference(root=root, files=files)


def s3_config(path: Path, source: str, output: str, endpoint: str, **keys: Any) -> Path:
    options = {"endpoint_url": endpoint, **keys.pop("credentials", SECRET)}
    keys.setdefault("executor", {"kind": "local"})
    return write_config(path, input=source, output=output, storage_options=options, shard=SHARD, **keys)


def new_bucket(server: S3Server) -> str:
    name = f"build-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def assert_same_output(server: S3Server, bucket: str, prefix: str, reference: Reference) -> None:
    """The S3 output holds exactly the local build's files, shard for shard byte-identical
    (the manifests differ only in the input URL recorded in config and config_sha256;
    reject details name the dataset root)."""
    assert list_keys(server, bucket, prefix) == sorted(reference.files)
    for name, expected in reference.files.items():
        got = get_object(server, bucket, f"{prefix}/{name}")
        if name == "manifest.json":
            got_doc, want_doc = orjson.loads(got), orjson.loads(expected)
            got_doc.pop("config_sha256"), want_doc.pop("config_sha256")
            got_input, want_input = got_doc["config"].pop("input"), want_doc["config"].pop("input")
            assert got_input.startswith("s3://") and not want_input.startswith("s3://")
            assert got_doc == want_doc
        elif name.startswith("_shardify/done/"):
            assert comparable_result(got) == comparable_result(expected), name
        elif name == "rejects.jsonl":
            assert [without_detail(r) for r in got.splitlines()] == [
                without_detail(r) for r in expected.splitlines()]  # fmt: skip
        else:
            assert got == expected, f"{name} differs from the local build"


def comparable_result(raw: bytes) -> dict[str, Any]:
    """A done record without what names the store: reject details, local media mtimes."""
    record = orjson.loads(raw)
    record["rejects"] = [without_detail(orjson.dumps(r)) for r in record["rejects"]]
    record["media"] = [m[:3] for m in record["media"]]
    return dict(record)


def without_detail(raw: bytes) -> dict[str, Any]:
    record = orjson.loads(raw)
    record.pop("detail")
    return dict(record)


@dataclass(frozen=True)
class S3Build:
    server: S3Server
    bucket: str
    url: str
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def s3_build(s3_server: S3Server, reference: Reference, tmp_path_factory: pytest.TempPathFactory) -> S3Build:
    """The reference dataset uploaded to moto and built S3 -> S3 by the CLI (verbose)."""
    bucket = new_bucket(s3_server)
    upload_tree(s3_server, reference.root, bucket, "ds")
    cfg = s3_config(tmp_path_factory.mktemp("s3") / "s3.yaml", f"s3://{bucket}/ds",
                    f"s3://{bucket}/out", s3_server.endpoint)  # fmt: skip
    result = run_cli("-v", "build", str(cfg))
    assert result.returncode == 0, result.stderr
    return S3Build(server=s3_server, bucket=bucket, url=f"s3://{bucket}/out", result=result)


def test_s3_build_is_byte_identical_to_the_local_build(s3_build: S3Build, reference: Reference) -> None:
    assert_same_output(s3_build.server, s3_build.bucket, "out", reference)
    assert "s3://" in s3_build.result.stdout  # the summary names the output


def test_credentials_never_leak(s3_build: S3Build) -> None:
    shown = s3_build.result.stdout + s3_build.result.stderr
    stored = b"".join(get_object(s3_build.server, s3_build.bucket, f"out/{name}")
                      for name in list_keys(s3_build.server, s3_build.bucket, "out"))  # fmt: skip
    for value in SECRET.values():
        assert value not in shown and value.encode() not in stored


def test_verify_and_inspect_read_the_s3_output(s3_build: S3Build) -> None:
    options = json.dumps({"endpoint_url": s3_build.server.endpoint})
    verify = run_cli("verify", s3_build.url, "--storage-options", options)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("OK")
    inspect = run_cli("inspect", s3_build.url, "--storage-options", options)
    assert inspect.returncode == 0 and "train: 19 lines -> 16 samples, 3 rejected" in inspect.stdout


def test_rerun_finds_the_finished_build(s3_build: S3Build, tmp_path: Path) -> None:
    cfg = s3_config(tmp_path / "again.yaml", f"s3://{s3_build.bucket}/ds", s3_build.url,
                    s3_build.server.endpoint)  # fmt: skip
    again = run_cli("build", str(cfg))
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_reader_streams_the_s3_output(s3_build: S3Build, reference: Reference, tmp_path: Path) -> None:
    from shardify import ShardDataset

    local_out = tmp_path / "local"
    for name, data in reference.files.items():
        (local_out / name).parent.mkdir(parents=True, exist_ok=True)
        (local_out / name).write_bytes(data)
    remote = ShardDataset(s3_build.url, split="train", shuffle=False, decode_images=False,
                          storage_options={"endpoint_url": s3_build.server.endpoint})  # fmt: skip
    local = ShardDataset(str(local_out), split="train", shuffle=False, decode_images=False)
    got, want = list(remote), list(local)
    assert len(got) == len(remote) == 16
    assert [s["key"] for s in got] == [s["key"] for s in want]
    assert [s["images"] for s in got] == [s["images"] for s in want]
    assert sum(len(s["images"]) for s in got) == 2 * 10 + 3 * 8


def test_build_through_a_faulty_network_is_identical(s3_server: S3Server, fault_proxy: FaultProxy,
                                                     reference: Reference, tmp_path: Path) -> None:  # fmt: skip
    bucket = new_bucket(s3_server)
    upload_tree(s3_server, reference.root, bucket, "ds")
    fault_proxy.fail_rate = 0.15
    cfg = s3_config(tmp_path / "faulty.yaml", f"s3://{bucket}/ds", f"s3://{bucket}/out",
                    fault_proxy.endpoint)  # fmt: skip
    result = run_cli("build", str(cfg))
    assert result.returncode == 0, result.stderr
    assert_same_output(s3_server, bucket, "out", reference)
    injected = {fault: fault_proxy.counts[fault] for fault in FaultProxy.FAULTS}
    assert sum(injected.values()) >= 5 and len([n for n in injected.values() if n]) >= 3, injected


def test_kill_9_mid_upload_leaves_no_partial_shard_and_resumes(
    s3_server: S3Server, fault_proxy: FaultProxy, reference: Reference, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_server)
    upload_tree(s3_server, reference.root, bucket, "ds")
    cfg = s3_config(tmp_path / "kill.yaml", f"s3://{bucket}/ds", f"s3://{bucket}/out",
                    fault_proxy.endpoint)  # fmt: skip
    uploads: list[str] = []

    def third_shard_upload(method: str, path: str) -> bool:
        if method == "PUT" and path.endswith(".tar"):
            uploads.append(path.rsplit("/", 1)[-1])
        return len(uploads) == 3 and path.endswith(uploads[-1])

    fault_proxy.stall = third_shard_upload
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "shardify", "build", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})  # fmt: skip
    try:
        assert fault_proxy.stalled.wait(120), "the build never reached its third shard upload"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    fault_proxy.stall = None
    fault_proxy.release()
    keys = list_keys(s3_server, bucket, "out")
    assert uploads[2] not in keys, "a half-uploaded shard is visible under its final name"
    assert [k for k in keys if k.endswith(".tar")] == uploads[:2]
    assert "manifest.json" not in keys and "_shardify/build.json" in keys

    puts_before = len(fault_proxy.log)
    rerun = run_cli("build", str(cfg))
    assert rerun.returncode == 0, rerun.stderr
    assert_same_output(s3_server, bucket, "out", reference)
    shard_puts = [p for m, p in fault_proxy.log[puts_before:] if m == "PUT" and p.endswith(".tar")]
    assert len(shard_puts) == sum(n.endswith(".tar") for n in reference.files) - 2


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shardify: error: "), result.stderr
    assert not result.stdout.strip()
    return lines[0]


def test_missing_bucket_exits_2_with_one_line_and_writes_nothing(
    s3_server: S3Server, reference: Reference, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_server)
    upload_tree(s3_server, reference.root, bucket, "ds")
    before = list_keys(s3_server, bucket)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    for source, output in [(f"s3://{missing}/ds", f"s3://{bucket}/out"),
                           (f"s3://{bucket}/ds", f"s3://{missing}/out"),
                           (str(reference.root), f"s3://{missing}/out")]:  # fmt: skip
        cfg = s3_config(tmp_path / "missing.yaml", source, output, s3_server.endpoint)
        line = one_line_error(run_cli("build", str(cfg)))
        assert f"s3://{missing}" in line and f"bucket '{missing}' does not exist" in line
        assert list_keys(s3_server, bucket) == before
    assert missing not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


def test_bad_credentials_exit_2_with_one_line_and_write_nothing(
    s3_server: S3Server, s3_bucket: str, s3_auth: dict[str, str], reference: Reference, tmp_path: Path
) -> None:
    valid = {"aws_access_key_id": s3_auth["key"], "aws_secret_access_key": s3_auth["secret"]}
    upload_tree(s3_server, reference.root, s3_bucket, "ds", **valid)
    before = list_keys(s3_server, s3_bucket, **valid)
    wrong = {"key": s3_auth["key"], "secret": "wrong-" + s3_auth["secret"]}
    unknown = {"key": "AKIA" + uuid.uuid4().hex[:16].upper(), "secret": SECRET["secret"]}
    for source, credentials in [(f"s3://{s3_bucket}/ds", wrong), (str(reference.root), unknown)]:
        cfg = s3_config(tmp_path / "bad.yaml", source, f"s3://{s3_bucket}/out", s3_server.endpoint,
                        credentials=credentials)  # fmt: skip
        line = one_line_error(run_cli("build", str(cfg)))
        assert "access denied" in line and "credentials" in line
        assert credentials["secret"] not in line and s3_auth["secret"] not in line
        assert list_keys(s3_server, s3_bucket, **valid) == before


@pytest.mark.ray
def test_s3_build_with_ray_is_identical(s3_server: S3Server, reference: Reference, tmp_path: Path) -> None:
    bucket = new_bucket(s3_server)
    upload_tree(s3_server, reference.root, bucket, "ds")
    cfg = s3_config(tmp_path / "ray.yaml", f"s3://{bucket}/ds", f"s3://{bucket}/out",
                    s3_server.endpoint, executor={"kind": "ray", "num_cpus": 2})  # fmt: skip
    result = run_cli("build", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "ray" in result.stdout
    assert_same_output(s3_server, bucket, "out", reference)
