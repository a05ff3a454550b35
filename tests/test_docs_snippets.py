"""The shell and Python snippets of README.md and docs/s3.md run as pasted (docs/reader.md's
are run by tests/test_reader_docs.py).

Each block is taken from the document itself, so an edit that breaks a command breaks this
test. The only change made to what a user pastes: docs/s3.md's local S3 port (9000) becomes
a free port, and every command runs in a fresh directory with a private HOME.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from shardify.config import load_config
from shardify.datagen import DatasetSpec, make_dataset
from shardify.pipeline import build
from tests.conftest import REPO

BLOCK = re.compile(r"^```(bash|console|python|yaml)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def blocks(doc: str, kind: str) -> list[str]:
    return [body for k, body in BLOCK.findall((REPO / doc).read_text()) if k == kind]


def console_commands(body: str) -> list[str]:
    """The ``$ `` lines of a console block (with their ``\\`` continuations)."""
    commands: list[str] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
        elif commands and commands[-1].endswith("\\"):
            commands[-1] += "\n" + line
    return commands


def run_shell(script: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell: the venv's commands first on PATH, a private HOME, Ray on loopback."""
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
    env.update(HOME=str(home), PATH=bin_dir + os.pathsep + env.get("PATH", ""), PYTHONPATH=str(REPO),
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")  # fmt: skip
    return env


def test_the_documents_have_the_snippets_this_test_runs() -> None:
    assert len(blocks("README.md", "bash")) >= 2 and len(blocks("README.md", "python")) == 2
    assert len(blocks("docs/s3.md", "console")) >= 3 and blocks("docs/s3.md", "python")


@pytest.mark.torch
def test_readme_python_snippets(tmp_path: Path, shell_env: dict[str, str]) -> None:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=3, video_samples=1, text_samples=1))
    build(load_config({"input": str(root), "output": str(tmp_path / "out"), "executor": {"kind": "local"}}))
    for code in blocks("README.md", "python"):  # the build API, then the reader
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=shell_env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "demo-out" / "manifest.json").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_readme_build_commands(tmp_path: Path, shell_env: dict[str, str]) -> None:
    """The README's command block, line by line, next to a config.yaml of two keys."""
    make_dataset(tmp_path / "ds", DatasetSpec(image_samples=4, video_samples=1, text_samples=1))
    (tmp_path / "config.yaml").write_text("input: ds\noutput: out\n")
    commands = next(b for b in blocks("README.md", "bash") if "shardify build config.yaml" in b)
    done = run_shell(commands, tmp_path, shell_env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "already complete" in done.stdout and "OK:" in done.stdout and "input compared" in done.stdout
    assert "== 000000000" in done.stdout  # shardify head printed samples


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_s3(tmp_path: Path, shell_env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """docs/s3.md's `python -m moto.server ...` line, started as pasted on a free port."""
    pytest.importorskip("moto")
    port = _free_port()
    (start,) = [c for b in blocks("docs/s3.md", "console") for c in console_commands(b) if "moto.server" in c]
    proc = subprocess.Popen(["bash", "-c", "exec " + start.replace("9000", str(port))], cwd=tmp_path,
                            env=shell_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("moto did not start")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.torch
def test_s3_page_runs_against_a_local_s3(tmp_path: Path, shell_env: dict[str, str],
                                         local_s3: tuple[int, subprocess.Popen[bytes]]) -> None:  # fmt: skip
    port, _ = local_s3
    here = lambda text: text.replace("9000", str(port))  # noqa: E731
    commands = [c for b in blocks("docs/s3.md", "console") for c in console_commands(b) if "moto.server" not in c]
    setup = [c for c in commands if not c.startswith(("shardify", "AWS_ENDPOINT_URL"))]
    use = [c for c in commands if c.startswith(("shardify", "AWS_ENDPOINT_URL"))]
    (tmp_path / "config.yaml").write_text(here(blocks("docs/s3.md", "yaml")[0]))
    script = "\n".join(here(c) for c in setup + use)
    done = run_shell(script, tmp_path, shell_env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "OK:" in done.stdout and "== 000000000" in done.stdout
    (code,) = blocks("docs/s3.md", "python")
    env = dict(shell_env, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    reader = subprocess.run([sys.executable, "-c", here(code)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert reader.returncode == 0, reader.stderr[-3000:]
