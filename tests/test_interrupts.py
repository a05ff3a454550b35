"""SIGINT and SIGTERM at random moments of a build: exit 130 / 143 with one line, no Ray
crash dump, nothing left running, and the resumed output is byte-identical.

Each test interrupts the same output over and over without cleaning it, so later attempts
resume what earlier ones left: the final rerun must still equal a clean build.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures.ray import assert_same_output, build_keys, descendants

ROUNDS = 10
LINE = "shardify: interrupted; rerun the same command to resume"


def _interrupt_loop(cfg: Path, env: dict[str, str], sig: signal.Signals, window_s: float,
                    seed: int) -> list[tuple[float, int]]:  # fmt: skip
    """Start the build ROUNDS times, each time signalling it after a random delay."""
    rng = random.Random(seed)
    seen = []
    command = str(Path(sys.executable).with_name("shardify"))
    for _ in range(ROUNDS):
        proc = subprocess.Popen([command, "build", str(cfg)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        delay = rng.uniform(1.0, window_s)  # from when the CLI runs (interpreter start: ~0.5 s)
        time.sleep(delay)
        children = descendants(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        seen.append((round(delay, 2), proc.returncode))
        if proc.returncode == 0:
            continue  # it finished before the signal: fine, the next round is a no-op rerun
        expected = 130 if sig == signal.SIGINT else 143
        assert proc.returncode == expected, f"after {delay:.2f} s: exit {proc.returncode}\n{err}"
        tail = [line for line in err.splitlines() if not line.startswith("[")]
        assert tail == [LINE], f"after {delay:.2f} s:\n{err}"
        assert _gone(children, within_s=15), f"Ray processes left running after {delay:.2f} s"
    return seen


def _gone(pids: set[int], *, within_s: float) -> bool:
    """Whether every process of ``pids`` has exited (zombies count as gone) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _zombies_only({pid for pid in pids if Path(f"/proc/{pid}").exists()}):
            return True
        time.sleep(0.2)
    return False


def _zombies_only(pids: set[int]) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("sig", [
    signal.SIGINT,
    pytest.param(signal.SIGTERM, marks=pytest.mark.xfail(
        reason="open (issue 11): a SIGTERM at one phase near the end of a Ray build (about 6.8 s "
               "in here) still meets Ray's handler or the default action (exit 15 / -15, no line) "
               "in about half the runs; the output stays resumable",
        strict=False)),
], ids=["SIGINT", "SIGTERM"])  # fmt: skip
def test_ray_build_interrupted_at_random_moments(ray_dataset: Path, ray_reference: Path, tmp_path: Path,
                                                 user_env: dict[str, str], sig: signal.Signals) -> None:  # fmt: skip
    out = tmp_path / "out"
    keys = build_keys(ray_dataset, out)
    keys["executor"] = {"num_cpus": 2}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(keys))
    _interrupt_loop(cfg, user_env, sig, window_s=7.0, seed=int(sig))
    final = subprocess.run([str(Path(sys.executable).with_name("shardify")), "build", str(cfg)],
                           env=user_env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert final.returncode == 0, final.stderr
    assert_same_output(out, ray_reference)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_local_build_interrupted_at_random_moments(ray_dataset: Path, ray_reference: Path, tmp_path: Path,
                                                   user_env: dict[str, str], sig: signal.Signals) -> None:  # fmt: skip
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(build_keys(ray_dataset, out, kind="local")))
    _interrupt_loop(cfg, user_env, sig, window_s=2.5, seed=int(sig) + 100)
    final = subprocess.run([str(Path(sys.executable).with_name("shardify")), "build", str(cfg)],
                           env=user_env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert final.returncode == 0, final.stderr
    assert_same_output(out, ray_reference)
