"""`make bench-smoke`: every benchmark case module still runs, and the aggregator isolates
a module that crashes. Benchmarks are not timed tests: only that the run works is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.py"


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)  # fmt: skip


def case_modules() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in (REPO / "scripts").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.ray
def test_smoke_run_has_every_case_module(tmp_path: Path) -> None:
    proc = run_bench("--smoke", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path),
                     timeout=300)  # fmt: skip
    results = json.loads((tmp_path / "bench-results.json").read_text())
    errors = [f"{c['module']}: {c['note']}" for c in results["cases"] if c.get("error")]
    assert not errors, "case modules failed:\n" + "\n".join(errors) + "\n" + proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results["smoke"] is True
    modules = {c["module"] for c in results["cases"]}
    assert modules == set(case_modules())
    assert "build" in modules
    for case in results["cases"]:
        assert isinstance(case["ratio"], (int, float)), case
        assert case["target"].split(" ")[0] in ("<=", ">="), case
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "smoke run" in table
    for case in results["cases"]:
        assert case["name"] in table
    assert "## Machine" in table and results["machine"]["cores"] >= 1


GOOD = '''
from benchlib import CaseResult

def run(workdir, smoke):
    assert workdir.is_dir() and smoke
    return [CaseResult(name="good case", ratio=0.5, target="<= 1.0", meaning="m", raw={"s": 1.5})]
'''
CRASH = '''
def run(workdir, smoke):
    raise RuntimeError("boom from the case module")
'''
DIES = '''
import os

def run(workdir, smoke):
    os._exit(3)
'''


def test_crashing_modules_become_error_rows(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, body in (("good", GOOD), ("crash", CRASH), ("dies", DIES)):
        (scripts / f"bench_{name}.py").write_text(body)
    proc = run_bench("--smoke", "--scripts", str(scripts), "--workdir", str(tmp_path / "w"),
                     "--out", str(tmp_path), timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    results = json.loads((tmp_path / "bench-results.json").read_text())
    by_module = {c["module"]: c for c in results["cases"]}
    assert set(by_module) == {"good", "crash", "dies"}
    assert by_module["good"]["met"] is True and by_module["good"]["ratio"] == 0.5
    assert "boom from the case module" in by_module["crash"]["note"]
    assert by_module["crash"]["error"] and by_module["dies"]["error"]
    assert "exited with code 3" in by_module["dies"]["note"]
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| good case | 0.50 | <= 1.0 | yes |" in table
    assert "boom from the case module" in table


def test_only_selects_modules_and_rejects_unknown_names(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench_good.py").write_text(GOOD)
    (scripts / "bench_crash.py").write_text(CRASH)
    proc = run_bench("--smoke", "--only", "good", "--scripts", str(scripts),
                     "--workdir", str(tmp_path / "w"), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "w" / "bench-results.json").read_text())
    assert [c["module"] for c in results["cases"]] == ["good"]
    bad = run_bench("--only", "nope", "--scripts", str(scripts), timeout=60)
    assert bad.returncode != 0 and "no such case module" in bad.stderr


HANGS = '''
import subprocess, sys, time

def run(workdir, smoke):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               start_new_session=True)  # leaves the group, as Ray workers do
    (workdir / "sleeper.pid").write_text(str(sleeper.pid))
    time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_hanging_module_is_ended_with_everything_it_started(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench_hangs.py").write_text(HANGS)
    (scripts / "bench_good.py").write_text(GOOD)
    proc = run_bench("--smoke", "--timeout", "5", "--scripts", str(scripts),
                     "--workdir", str(tmp_path / "w"), timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    results = json.loads((tmp_path / "w" / "bench-results.json").read_text())
    by_module = {c["module"]: c for c in results["cases"]}
    assert "timed out after 5 s" in by_module["hangs"]["note"]
    assert by_module["good"]["met"] is True
    sleeper = int((tmp_path / "w" / "hangs" / "sleeper.pid").read_text())
    assert not _alive(sleeper)
