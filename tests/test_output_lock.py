"""One build at a time per output: a second build refuses while the first holds the lease;
a lease whose process died, or that was not renewed, is taken over; two builds racing on
one output never interleave (the output ends up exactly as a clean build)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from shardify import lock as lock_module
from shardify.config import load_config
from shardify.datagen import DatasetSpec, make_dataset
from shardify.errors import OutputMismatchError
from shardify.layout import LOCK_DIR, lock_name
from shardify.lock import Lease, OutputLock
from shardify.pipeline import build
from shardify.storage import Location
from tests.conftest import run_cli, write_config
from tests.fixtures.ray import output_files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", DatasetSpec(image_samples=6, video_samples=1, text_samples=2,
                                                     test_split=False))  # fmt: skip


def _config(root: Path, out: Path) -> Path:
    return write_config(out.parent / f"{out.name}.yaml", input=str(root), output=str(out),
                        shard={"max_samples": 2}, executor={"kind": "local"})  # fmt: skip


def _plant(out: Path, lease: Lease) -> Path:
    path = out / lock_name(lease.token)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(lease.to_json()))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_build_refuses_while_the_first_holds_the_lease(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputLock(Location(str(out))):
        done = run_cli("build", str(_config(root, out)))
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "is being built by another shardify build" in line
    assert f"pid {os.getpid()}" in line and "wait for it to finish" in line
    assert not (out / "manifest.json").exists()
    assert run_cli("build", str(_config(root, out))).returncode == 0  # released: builds now
    assert not list((out / LOCK_DIR).iterdir())


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    now = time.time()
    stale = _plant(out, Lease(token="a" * 32, host=socket.gethostname(), pid=_dead_pid(), started=now,
                              heartbeat=now))  # fmt: skip
    done = run_cli("build", str(_config(root, out)))
    assert done.returncode == 0, done.stderr
    assert not stale.exists()


@pytest.mark.parametrize(("age_s", "refused"), [(5.0, True), (lock_module.LEASE_S + 60, False)])
def test_a_lease_from_another_host_holds_until_it_expires(root: Path, tmp_path: Path, age_s: float,
                                                          refused: bool) -> None:  # fmt: skip
    out = tmp_path / "out"
    then = time.time() - age_s
    _plant(out, Lease(token="b" * 32, host="elsewhere", pid=1, started=then, heartbeat=then))
    if refused:
        with pytest.raises(OutputMismatchError, match="host elsewhere, pid 1"):
            build(load_config(_config(root, out)))
    else:
        assert build(load_config(_config(root, out))).resumed_shards == 0


def test_the_lease_is_renewed_while_a_build_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    out = Location(str(tmp_path / "out"))
    with OutputLock(out) as held:
        first = Lease.from_json(orjson.loads(out.read_bytes(lock_name(held.lease.token))))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = Lease.from_json(orjson.loads(out.read_bytes(lock_name(held.lease.token))))
            if now.heartbeat > first.heartbeat:
                break
            time.sleep(0.02)
        assert now.heartbeat > first.heartbeat and now.started == first.started
    assert not out.exists(lock_name(held.lease.token))


def test_two_builds_racing_never_interleave(root: Path, tmp_path: Path) -> None:
    """Started together, each either builds, finds the build complete, or refuses; the
    output is byte-identical to a clean build either way."""
    out = tmp_path / "out"
    cfg = _config(root, out)
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-m", "shardify", "build", str(cfg)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for code, err in results:
        assert code == 0 or (code == 2 and "is being built by another shardify build" in err), err
    if all(code == 2 for code, _ in results):  # all refused each other: a rerun builds it
        assert run_cli("build", str(cfg)).returncode == 0
    clean = tmp_path / "clean"
    assert run_cli("build", str(_config(root, clean))).returncode == 0
    assert output_files(out) == output_files(clean)
    for name in output_files(out):
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    assert run_cli("verify", str(out)).returncode == 0
