"""Ray builds that lose a worker or the driver still end byte-identical to a clean build."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shardify.config import load_config
from shardify.pipeline import build
from tests.fixtures.ray import (
    RayCluster,
    assert_same_output,
    build_keys,
    cmdline,
    descendants,
    is_loopback,
    kill_pids,
    listeners,
    session_members,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TASK_TITLE = "ray::_run_shard"  # Ray names a busy worker after the function it runs


def test_worker_killed_mid_task_build_completes(
    ray_cluster: RayCluster, ray_dataset: Path, ray_reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = load_config(build_keys(ray_dataset, out, address=ray_cluster.address))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = build(config)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    builder = threading.Thread(target=run)
    builder.start()
    victim, staging = _kill_worker_mid_write(out, ray_cluster.raylet_pids, builder)
    builder.join(timeout=180)
    assert not builder.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert not Path(f"/proc/{victim}").exists()
    assert not staging.exists()  # the half-written file is gone, never under a final name
    assert_same_output(out, ray_reference)


def _kill_worker_mid_write(
    out: Path, raylets: list[int], builder: threading.Thread
) -> tuple[int, Path]:
    """SIGKILL a worker that runs a shard task and has its shard half written.

    ``build_shard`` writes into ``.<shard>.tmp-<pid>-<id>`` (the worker's pid) and renames it
    when complete: a kill that leaves that file behind hit the task mid-write.
    """
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and builder.is_alive():
        workers = {pid for raylet in raylets for pid in descendants(raylet)}
        for staging in out.glob(".*.tmp-*"):
            pid = int(staging.name.split(".tmp-")[1].split("-")[0])
            if pid in workers and cmdline(pid).startswith(TASK_TITLE):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
                if staging.exists():
                    return pid, staging
        time.sleep(0.002)
    raise AssertionError("never caught a worker in the middle of writing a shard")


def test_driver_killed_then_rerun_keeps_finished_shards(
    ray_dataset: Path, ray_reference: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    keys = build_keys(ray_dataset, out)
    keys["executor"] = {"num_cpus": 1}  # the default (local) Ray, slower: easier to catch
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(keys))
    command = [sys.executable, "-m", "shardify", "build", str(config)]
    driver = subprocess.Popen(command, env=user_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        _wait_for_done(out, driver, at_least=2)
        ray_listeners = listeners(descendants(driver.pid))
        os.kill(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=30)
    finally:
        kill_pids(session_members(driver.pid))  # the driver's own Ray: gone with it or now
    # The private Ray listened on loopback only, while a user's environment was in force.
    names = {name for _, name, _ in ray_listeners}
    assert {"gcs_server", "raylet"} <= names, ray_listeners
    assert [item for item in ray_listeners if not is_loopback(item[2])] == []

    kept = _finished_shards(out)
    total = sum(1 for _ in _planned_shards(ray_reference))
    assert 2 <= len(kept) < total, "the driver should die mid-build"
    rerun = subprocess.run(command, env=user_env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    resumed = re.search(r"resumed: (\d+) shard\(s\) kept", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= len(kept), rerun.stdout
    assert_same_output(out, ray_reference)
    for name, (inode, mtime) in kept.items():
        st = (out / name).stat()
        assert (st.st_ino, st.st_mtime_ns) == (inode, mtime), f"{name} was rewritten"


def _wait_for_done(out: Path, driver: subprocess.Popen[bytes], *, at_least: int) -> None:
    deadline = time.monotonic() + 120
    done = out / "_shardify" / "done"
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise AssertionError(f"the build ended before it was killed: {driver.stderr!r}")
        if done.is_dir() and len(list(done.glob("*.json"))) >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError("no shard finished in 120 s")


def _finished_shards(out: Path) -> dict[str, tuple[int, int]]:
    """Shard name -> (inode, mtime_ns) for every shard with a saved result."""
    kept = {}
    for record in (out / "_shardify" / "done").glob("*.json"):
        tar = out / record.name.removesuffix(".json")
        st = tar.stat()
        kept[tar.name] = (st.st_ino, st.st_mtime_ns)
    return kept


def _planned_shards(reference: Path) -> list[str]:
    return sorted(p.name for p in reference.glob("*.tar"))
