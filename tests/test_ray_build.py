"""One dataset, built by every Ray set-up, byte-identical to the ``local`` executor's build.

- ``shardify build`` with the default executor (a private local Ray that shardify starts),
  run the way a user runs it, next to a stale cluster address that a bare ``ray.init()``
  would hang on;
- a 2-node cluster on 127.0.0.1, where tasks must run on both nodes;
- ``ray job submit`` to a ``ray start --head`` on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from shardify.config import load_config
from shardify.pipeline import build
from tests.fixtures.ray import (
    BIN,
    RayCluster,
    RayHead,
    assert_same_output,
    build_keys,
    free_ports,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROGRESS = re.compile(r"^\[[#-]{24}\] +\d+\.\d%  shards \d+/\d+\+?  samples \d+  rejects \d+  ")


def write_yaml(path: Path, keys: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


def shardify_cli(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shardify", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_default_executor_cli_matches_local(
    ray_dataset: Path, ray_reference: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    # What `ray start` leaves behind after a crash: an address file naming a dead cluster.
    (dead,) = free_ports(1)
    stale = Path(user_env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
    stale.parent.mkdir()
    stale.write_text(f"127.0.0.1:{dead}")
    out = tmp_path / "out"
    minimal = build_keys(ray_dataset, out)
    minimal.pop("executor")  # no executor key at all: the default
    proc = shardify_cli("build", str(write_yaml(tmp_path / "cfg.yaml", minimal)), env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert "with ray (local Ray on 127.0.0.1, " in proc.stdout
    assert_same_output(out, ray_reference)
    # Quiet: stderr holds the progress lines and nothing else (no Ray logs, no warnings).
    noise = [line for line in proc.stderr.splitlines() if not PROGRESS.match(line)]
    assert noise == [], proc.stderr
    # The phases before the first shard lands are named on the progress line.
    assert "(planning " in proc.stderr and "(starting Ray)" in proc.stderr
    # Ray kept token auth on, with its token in the (private) home, not anywhere else.
    assert (Path(user_env["HOME"]) / ".ray" / "auth_token").is_file()


def test_two_node_cluster_matches_local(
    ray_cluster: RayCluster, ray_dataset: Path, ray_reference: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    out = tmp_path / "out"
    config = load_config(build_keys(ray_dataset, out, address=ray_cluster.address))
    with caplog.at_level(logging.INFO, logger="shardify.executors.ray"):
        report = build(config)
    assert_same_output(out, ray_reference)
    assert report.manifest.to_json() == orjson.loads((ray_reference / "manifest.json").read_bytes())
    spread = [r.getMessage() for r in caplog.records if "task(s) ran on" in r.getMessage()]
    shards = sum(len(s.shards) for s in report.manifest.splits.values())
    assert len(spread) == 1 and f"ray: {shards} task(s) ran on 2 node(s)" in spread[0]
    for node_id in ray_cluster.node_ids:
        assert node_id[:8] in spread[0]


def test_sample_error_reaches_the_user_as_file_and_line(
    ray_cluster: RayCluster, ray_dataset: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    """on_error=fail on a cluster: exit 1 and shardify's one line, no Ray traceback."""
    keys = build_keys(ray_dataset, tmp_path / "out", address=ray_cluster.address)
    keys["validation"] = {"on_error": "fail"}
    # A user's environment: joining a cluster on 127.0.0.1 must work without Ray's settings.
    proc = shardify_cli("build", str(write_yaml(tmp_path / "cfg.yaml", keys)), env=user_env)
    assert proc.returncode == 1, proc.stderr
    lines = (ray_dataset / "train.jsonl").read_bytes().split(b"\n")
    bad = lines.index(b"not json") + 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"shardify: error: {ray_dataset / 'train.jsonl'}:{bad}: invalid_json: ")
    assert "Traceback" not in proc.stderr and "RayTaskError" not in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_ray_job_submit_matches_local(
    ray_head: RayHead, ray_dataset: Path, ray_reference: Path, tmp_path: Path
) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    out = tmp_path / "out"
    minimal = build_keys(ray_dataset, out)
    minimal.pop("executor")  # the job's RAY_ADDRESS makes it join the cluster
    write_yaml(job_dir / "cfg.yaml", minimal)
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", ray_head.dashboard,
         "--working-dir", str(job_dir), "--", "shardify", "build", "cfg.yaml"],
        env=ray_head.env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with ray (Ray cluster, 2 CPUs" in proc.stdout, proc.stdout
    assert_same_output(out, ray_reference)


def test_a_shardify_folder_in_the_cwd_does_not_shadow_the_package_in_workers(
    ray_dataset: Path, ray_reference: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    """Run from ~ with the clone in ~/shardify: Ray puts the CWD on the workers' sys.path."""
    home = tmp_path / "home"
    (home / "shardify").mkdir(parents=True)
    (home / "shardify" / "__init__.py").write_text("raise ImportError('the wrong shardify')\n")
    (home / "manifest.py").write_text("raise ImportError('a stray manifest.py')\n")
    out = tmp_path / "out"
    keys = build_keys(ray_dataset, out)
    keys.pop("executor")
    cfg = write_yaml(tmp_path / "cfg.yaml", keys)
    command = str(Path(sys.executable).with_name("shardify"))  # the console script, as a user runs it
    proc = subprocess.run([command, "build", str(cfg)], env=user_env, cwd=home, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, ray_reference)
