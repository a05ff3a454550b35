"""`make bench`: run every benchmark case module and write the results table.

Each ``scripts/bench_<name>.py`` exposes ``run(workdir, smoke) -> list[CaseResult]``
(see ``benchlib.py``). Every module runs in its own child process (``--child``), so a
module that crashes, hangs or leaves Ray running becomes one error row instead of ending
the run, and one module's memory or Ray state never leaks into another's figures.

    python scripts/bench.py                  # full run: BENCHMARKS.md + bench-results.json
    python scripts/bench.py --smoke          # every case in its tiny mode (CI), into .bench/
    python scripts/bench.py --only build,video --workdir /tmp/b

A full run of every module writes the two files at the repository root; a smoke or
``--only`` run writes them into the work directory (so it never overwrites the committed
table) unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_JSON = "bench-results.json"
RESULTS_MD = "BENCHMARKS.md"
FORMAT = "shardify.bench/1"
PACKAGES = ("shardify", "ray", "av", "pillow", "webdataset", "torch", "numpy", "fsspec", "orjson")
log = logging.getLogger("bench")


def discover(scripts: Path) -> list[str]:
    """Names of the case modules present: ``bench_video.py`` -> ``video``."""
    return sorted(p.stem[len("bench_"):] for p in scripts.glob("bench_*.py"))


def select(names: list[str], only: Optional[str]) -> list[str]:
    """The modules ``--only`` asks for (comma-separated); an unknown name is an error."""
    if not only:
        return names
    wanted = [w.strip().removeprefix("bench_") for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SystemExit(f"bench: --only {','.join(unknown)}: no such case module "
                         f"(present: {', '.join(names) or 'none'})")  # fmt: skip
    return [n for n in names if n in wanted]


# --- child side: import one module, run it, write its rows --------------------------------


def run_child(name: str, scripts: Path, workdir: Path, smoke: bool, result_file: Path) -> int:
    """Run ``bench_<name>.run`` in this process and write its rows (or its crash) as JSON."""
    for path in (str(HERE), str(scripts)):
        if path not in sys.path:
            sys.path.insert(0, path)
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"bench_{name}")
        results = module.run(workdir, smoke)
        rows = [check_row(r.to_json()) for r in results]
        if not rows:
            raise ValueError(f"bench_{name}.run returned no results")
        payload: dict[str, Any] = {"status": "ok", "cases": rows}
    except BaseException as exc:  # noqa: B036 - any failure becomes an error row
        payload = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()}  # fmt: skip
    payload["elapsed_s"] = round(time.perf_counter() - started, 2)
    result_file.write_text(json.dumps(payload, indent=1, default=str))
    return 0 if payload["status"] == "ok" else 1


def check_row(row: dict[str, Any]) -> dict[str, Any]:
    """A case row must carry a finite ratio and a target like ``<= 1.3``."""
    ratio = row.get("ratio")
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise ValueError(f"case {row.get('name')!r}: ratio {ratio!r} is not a finite number")
    op, _, bound = str(row.get("target", "")).partition(" ")
    if op not in ("<=", ">=") or not _is_number(bound):
        raise ValueError(f"case {row.get('name')!r}: target {row.get('target')!r} is not "
                         "'<= X' or '>= X'")  # fmt: skip
    return row


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- parent side: one child per module, isolated ------------------------------------------


def run_module(name: str, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run one module in a child process; any failure comes back as an error record."""
    workdir = args.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = args.workdir / f"{name}.result.json"
    log_file = args.workdir / f"{name}.log"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name,
           "--scripts", str(args.scripts), "--workdir", str(workdir),
           "--result-file", str(result_file)] + (["--smoke"] if args.smoke else [])  # fmt: skip
    started = time.perf_counter()
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
    record: dict[str, Any] = {"module": name, "log": str(log_file)}
    if result_file.is_file():
        record.update(json.loads(result_file.read_text()))
    else:
        why = f"timed out after {timeout:.0f} s" if timed_out else \
            f"exited with code {proc.returncode} without results"
        record.update(status="error", error=f"the module process {why}; see {log_file}",
                      traceback=_tail(log_file))  # fmt: skip
    record["elapsed_s"] = round(time.perf_counter() - started, 2)
    return record


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the child we started and everything it spawned, by process id: its process
    group, plus descendants that left the group (Ray starts its workers in new sessions)."""
    pids = _descendants(proc.pid)
    for kill, target in [(os.killpg, proc.pid)] + [(os.kill, pid) for pid in pids]:
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc (empty where /proc does not exist)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def rows_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The module's case rows, or one error row saying why it has none."""
    if record.get("status") == "ok":
        return [{"module": record["module"], **row} for row in record["cases"]]
    return [{"module": record["module"], "name": f"{record['module']}: error", "ratio": None,
             "target": "", "met": False, "error": True, "raw": {},
             "meaning": f"bench_{record['module']}.py did not finish",
             "note": str(record.get("error", "unknown error"))}]  # fmt: skip


# --- the machine --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, RAM, Python, package versions."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "load_average": _load(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _load() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny mode of every case (seconds)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated modules, e.g. build,video")
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench",
                        help="generated data, logs and scratch output (default: .bench/)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="where BENCHMARKS.md and bench-results.json go (default: the repo "
                             "root for a full run, the workdir for --smoke / --only)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per module before it is ended (default 600, smoke 180)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the case modules and exit")
    parser.add_argument("--scripts", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.scripts = args.scripts.resolve()
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        return run_child(args.child, args.scripts, args.workdir, args.smoke, args.result_file)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    names = select(discover(args.scripts), args.only)
    if args.list:
        sys.stdout.write("".join(f"{n}\n" for n in names))
        return 0
    out = args.out or (args.workdir if args.smoke or args.only else REPO)
    timeout = args.timeout or (180.0 if args.smoke else 600.0)
    args.workdir.mkdir(parents=True, exist_ok=True)
    machine, started, date = machine_info(), time.perf_counter(), _now()
    records = []
    for name in names:
        log.info("%s: running%s ...", name, " (smoke)" if args.smoke else "")
        record = run_module(name, args, timeout)
        log.info("%s: %s in %.1f s", name, record["status"], record["elapsed_s"])
        records.append(record)
    machine["load_average_end"] = _load()
    results = make_results(records, machine, date, smoke=args.smoke,
                           elapsed_s=time.perf_counter() - started)  # fmt: skip
    write_results(results, out)
    log.info("wrote %s and %s", out / RESULTS_MD, out / RESULTS_JSON)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def make_results(records: list[dict[str, Any]], machine: dict[str, Any], date: str, *,
                 smoke: bool, elapsed_s: float) -> dict[str, Any]:  # fmt: skip
    """The JSON document: every row, every module's status, the machine."""
    modules = [{k: r.get(k) for k in ("module", "status", "elapsed_s", "error", "log")}
               for r in records]  # fmt: skip
    return {"format": FORMAT, "date": date, "smoke": smoke, "elapsed_s": round(elapsed_s, 1),
            "machine": machine, "modules": modules,
            "cases": [row for r in records for row in rows_of(r)]}  # fmt: skip


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / RESULTS_MD).write_text(render_markdown(results))


# --- the markdown table -------------------------------------------------------------------


def render_markdown(results: dict[str, Any]) -> str:
    """BENCHMARKS.md: the results table, then the machine and each module's run."""
    kind = "smoke run (tiny data: the ratios mean nothing)" if results["smoke"] else "full run"
    lines = [
        "# Benchmarks", "",
        f"Generated by `make bench` (`scripts/bench.py`), {kind}, on {results['date']} in "
        f"{results['elapsed_s']:.0f} s. Every ratio is against a baseline measured in the same "
        "run on the same data; how to run and read them: `docs/benchmarks.md`.", "",
        "| case | ratio | target | met? | meaning | raw figures | notes |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in results["cases"]:
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.2f}"
        cells = [row["name"], ratio, row.get("target") or "-", verdict(row), row.get("meaning", ""),
                 format_raw(row.get("raw") or {}), row.get("note", "")]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Machine", ""] + _machine_lines(results["machine"])
    lines += ["", "## Modules", "", "| module | status | time | error |", "|---|---|---|---|"]
    for mod in results["modules"]:
        lines.append(f"| {mod['module']} | {mod['status']} | {mod['elapsed_s']:.0f} s | "
                     f"{_cell(mod.get('error') or '')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def verdict(row: dict[str, Any]) -> str:
    """``yes``, or ``no`` with the distance to the target, or ``error``."""
    if row.get("error"):
        return "error"
    if row["met"]:
        return "yes"
    op, _, value = row["target"].partition(" ")
    bound, ratio = float(value), float(row["ratio"])
    if op == "<=":
        return f"**no**: {ratio / bound:.2f}x the bound ({(ratio / bound - 1) * 100:.0f}% over)"
    return f"**no**: {ratio / bound:.2f} of the bound ({(1 - ratio / bound) * 100:.0f}% short)"


def format_raw(raw: dict[str, Any]) -> str:
    """``key=value`` pairs; floats to 3 significant digits."""
    parts = []
    for key, value in raw.items():
        if isinstance(value, float):
            value = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _machine_lines(m: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return [
        f"- CPU: {m['cpu']}; {m['cores']} cores ({m['cores_usable']} usable by this process)",
        f"- RAM: {m['ram_gib']} GiB",
        f"- load average (1/5/15 min) at start: {m['load_average']}, at end: "
        f"{m.get('load_average_end')} (other work on the machine makes the figures noisy)",
        f"- Python {m['python']} on {m['platform']}",
        f"- packages: {packages}",
    ]


if __name__ == "__main__":
    sys.exit(main())
