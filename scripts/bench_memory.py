"""Memory benchmarks: peak RSS of a build over hostile giant media files (issue 11).

A build once read a 6 GiB sparse ``huge.jpg`` whole (6.2 GB peak RSS). The dataset here has
a few normal lines (datagen images, videos, text) plus hostile lines whose media are sparse
files (no disk used): a 6 GiB ``huge.jpg`` and a 6 GiB ``huge.mp4`` (above
``validation.max_image_bytes`` = 64 MiB and ``max_video_bytes`` = 1 GiB: ``file_too_large``
from an fstat), and files just below the limits, a 60 MiB ``near_limit.jpg`` (read whole,
then refused by Pillow) and a 768 MiB ``near_limit.mp4`` (opened by FFmpeg in place).

Each case runs the real command (``python -m shardify build``) in a child process, once per
dataset per round, interleaved: over that dataset and, as the baseline, over the same
normal lines without the hostile ones (the local case also over the two 6 GiB files alone).
Peaks are the kernel's high-water marks, not sampled RSS: ``wait4``'s ``ru_maxrss`` (the
build process and every descendant it reaped) and each process's ``VmHWM`` (read from /proc
every 50 ms while it runs). A case fails (raises) unless every hostile line got its expected
reject code and no normal line was rejected. ``python scripts/bench_memory.py [--smoke]``
prints JSON; docs/benchmarks.md describes the cases.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CaseResult, run_standalone  # noqa: E402

log = logging.getLogger("bench.memory")
MIB, GIB = 1 << 20, 1 << 30
IMAGE_LIMIT = 64 * MIB
VIDEO_LIMIT = 1 * GIB
ABSOLUTE_LIMIT_MIB = 2048
TARGET = 1.5
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""A local Ray on 127.0.0.1 only (docs: NOTES on Ray 2.60)."""


@dataclass(frozen=True)
class Hostile:
    """One hostile line: a sparse media file and the reject codes it may get."""

    name: str
    size: int
    kind: str
    """``image`` or ``video``."""
    verdicts: frozenset[str]


HOSTILE = (
    Hostile("huge.jpg", 6 * GIB, "image", frozenset({"file_too_large"})),
    Hostile("huge.mp4", 6 * GIB, "video", frozenset({"file_too_large"})),
    Hostile("near_limit.jpg", 60 * MIB, "image", frozenset({"unreadable_image"})),
    Hostile("near_limit.mp4", 768 * MIB, "video", frozenset({"unreadable_video"})),
)
GIANT_ONLY = HOSTILE[:2]
"""The 6 GiB files alone: what the limits cost when nothing near them is read."""


@dataclass(frozen=True)
class Plan:
    """How much normal data and how many rounds one run uses."""

    image_samples: int
    video_samples: int
    repeat: int
    executors: tuple[str, ...]

    @classmethod
    def of(cls, smoke: bool) -> Plan:
        if smoke:  # no Ray: its start-up alone would take the smoke budget
            return cls(image_samples=6, video_samples=1, repeat=1, executors=("local",))
        return cls(image_samples=40, video_samples=4, repeat=3, executors=("local", "ray"))


# --- data ---------------------------------------------------------------------------------


def hostile_lines(hostile: tuple[Hostile, ...]) -> list[str]:
    """One JSONL line per hostile file, image lines as ``images``, video lines as ``video``."""
    from shardify.datagen import chat, image_item, text_item, video_item

    lines = []
    for h in hostile:
        path = f"hostile/{h.name}"
        if h.kind == "image":
            doc: dict[str, Any] = {"messages": chat([image_item(), text_item("What?")], "This."),
                                   "images": [path]}  # fmt: skip
        else:
            doc = {"messages": chat([video_item(), text_item("What?")], "That."),
                   "video": {"path": path, "num_frames": 4}}  # fmt: skip
        lines.append(json.dumps(doc))
    return lines


@dataclass(frozen=True)
class Dataset:
    """One dataset root: the same normal lines, then these hostile lines (last, in order)."""

    root: Path
    hostile: tuple[Hostile, ...]


def make_dataset_with(root: Path, plan: Plan, hostile: tuple[Hostile, ...]) -> Dataset:
    """The normal lines (same seed, so identical in every root) plus ``hostile`` lines, with
    their sparse files made under ``root/hostile``."""
    from shardify.datagen import DatasetSpec, make_dataset

    shutil.rmtree(root, ignore_errors=True)
    spec = DatasetSpec(image_samples=plan.image_samples, video_samples=plan.video_samples,
                       text_samples=2, image_size=(640, 480), test_split=False,
                       extra_lines=hostile_lines(hostile))  # fmt: skip
    make_dataset(root, spec)
    (root / "hostile").mkdir()
    for h in hostile:
        with open(root / "hostile" / h.name, "wb") as handle:  # sparse: no disk used
            handle.truncate(h.size)
    return Dataset(root, hostile)


# --- measuring one build ------------------------------------------------------------------


@dataclass
class Peak:
    """The peak RSS of one build: the kernel's figures for the process and its tree."""

    maxrss_mib: float
    """``wait4`` ru_maxrss: the largest of the build process and the descendants it reaped."""
    hwm_mib: dict[int, float] = field(default_factory=dict)
    """pid -> VmHWM (peak RSS of that process), last value read while it ran."""
    roles: dict[int, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def role_max(self, role: str) -> float:
        return max((v for pid, v in self.hwm_mib.items() if self.roles[pid] == role), default=0.0)

    @property
    def tree_sum_mib(self) -> float:
        """Sum of every process's own peak: an upper bound on the tree's peak RSS."""
        return sum(self.hwm_mib.values())


class TreeWatcher(threading.Thread):
    """Reads VmHWM of ``root`` and all its descendants every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.hwm: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.interval)

    def sample(self) -> None:
        for pid in [self.root, *descendants(self.root)]:
            hwm = read_hwm_kib(pid)
            if hwm is None:
                continue
            self.hwm[pid] = max(self.hwm.get(pid, 0.0), hwm / 1024)
            if pid not in self.roles:
                self.roles[pid] = "driver" if pid == self.root else role_of(pid)


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc (Ray's workers left the session, not the tree)."""
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


def read_hwm_kib(pid: int) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None  # a zombie or kernel thread has no VmHWM


def role_of(pid: int) -> str:
    """``video_helper``, ``ray_worker`` or ``ray_system`` (gcs, raylet, monitors)."""
    try:
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return "gone"
    if "shardify.media.video_worker" in cmdline:
        return "video_helper"
    if "default_worker.py" in cmdline or cmdline.startswith("ray::"):
        return "ray_worker"
    return "ray_system" if "ray" in cmdline else "other"


def measured_build(root: Path, out: Path, executor: str, timeout: float = 600.0) -> Peak:
    """Run ``python -m shardify build`` over ``root`` and return its peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps({
        "input": str(root), "output": str(out), "splits": ["train"],
        "executor": {"kind": executor, **({"num_cpus": 2} if executor == "ray" else {})},
        "validation": {"max_image_bytes": IMAGE_LIMIT, "max_video_bytes": VIDEO_LIMIT},
        "shard": {"max_samples": 16}, "video": {"timeout_s": 60},
    }))  # fmt: skip
    log_path = out.parent / f"{out.name}.log"
    env = {**os.environ, **RAY_ENV}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "shardify", "build", str(config)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    watcher = TreeWatcher(proc.pid)
    watcher.start()
    killer = threading.Timer(timeout, kill_tree, (proc.pid,))
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
        watcher.stopped.set()
        watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"shardify build over {root} exited {proc.returncode}: {tail}")
    return Peak(maxrss_mib=usage.ru_maxrss / 1024, hwm_mib=watcher.hwm, roles=watcher.roles,
                elapsed_s=time.perf_counter() - started)  # fmt: skip


def kill_tree(root: int) -> None:
    """End a build past its time limit and everything it started (Ray's processes too)."""
    for pid in [*descendants(root), root]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- checking the verdicts ----------------------------------------------------------------


def check_verdicts(data: Dataset, out: Path) -> dict[str, str]:
    """Hostile file -> its reject code; raises unless each got one it may get and no normal
    line was rejected (a build that dropped the lines some other way measures nothing)."""
    from shardify.manifest import read_rejects
    from shardify.storage import Location

    lines = (data.root / "train.jsonl").read_bytes().splitlines()
    first = len(lines) - len(data.hostile) + 1  # the hostile lines are the last ones, in order
    reasons = {r["line"]: r["reason"] for r in read_rejects(Location(str(out)))}
    got = {h.name: reasons.get(first + i, "accepted") for i, h in enumerate(data.hostile)}
    wrong = [f"{h.name}: {got[h.name]} (expected {'/'.join(sorted(h.verdicts))})"
             for h in data.hostile if got[h.name] not in h.verdicts]  # fmt: skip
    stray = sorted(line for line in reasons if line < first)
    if wrong or stray:
        raise RuntimeError(f"build {out}: wrong verdicts {wrong}; normal lines "
                           f"rejected: {stray} ({[reasons[n] for n in stray]})")  # fmt: skip
    return got


# --- cases --------------------------------------------------------------------------------


Runs = dict[str, list[Peak]]
"""Dataset name -> one Peak per round."""


def rounds(datasets: dict[str, Dataset], scratch: Path, executor: str, repeat: int,
           figure: Callable[[Peak], float]) -> tuple[Runs, dict[str, str]]:  # fmt: skip
    """``repeat`` rounds of one build per dataset, interleaved; the full hostile set's verdicts."""
    runs: Runs = {name: [] for name in datasets}
    verdicts: dict[str, str] = {}
    for i in range(repeat):
        for name, data in datasets.items():
            out = scratch / f"{name}-{executor}"
            runs[name].append(measured_build(data.root, out, executor))
            got = check_verdicts(data, out)
            verdicts = got if name == "giant" else verdicts
        log.info("%s round %d: peak RSS %s", executor, i + 1,
                 ", ".join(f"{n} {figure(r[-1]):.0f} MiB" for n, r in runs.items()))  # fmt: skip
    return runs, verdicts


def hostile_raw(verdicts: dict[str, str]) -> dict[str, Any]:
    return {"hostile": {h.name: f"{h.size / MIB:.0f} MiB sparse -> {verdicts[h.name]}"
                        for h in HOSTILE},
            "max_image_bytes_mib": IMAGE_LIMIT / MIB, "max_video_bytes_mib": VIDEO_LIMIT / MIB}  # fmt: skip


def peak_raw(figures: dict[str, list[float]]) -> dict[str, Any]:
    """The figures behind a ratio: each dataset's peak and rounds (MiB), the absolute check."""
    raw: dict[str, Any] = {}
    for name, values in figures.items():
        raw[f"{name}_peak_mib"] = round(max(values), 1)
        raw[f"{name}_rounds_mib"] = [round(x, 1) for x in values]
    peak = max(figures["giant"])
    return raw | {
        "absolute_limit_mib": ABSOLUTE_LIMIT_MIB,
        "absolute_ok": peak < ABSOLUTE_LIMIT_MIB,
    }


def tree_raw(runs: Runs, roles: tuple[str, ...]) -> dict[str, Any]:
    """Per-role VmHWM maxima (read from /proc while the processes ran, so a rise in a
    process's last 50 ms can be missed), ``wait4``'s ru_maxrss, the tree's sum, the times."""
    raw: dict[str, Any] = {}
    for label, peaks in runs.items():
        raw |= {f"{label}_{role}_hwm_mib": round(max(p.role_max(role) for p in peaks), 1)
                for role in roles}  # fmt: skip
        raw[f"{label}_wait4_maxrss_mib"] = round(max(p.maxrss_mib for p in peaks), 1)
        raw[f"{label}_tree_sum_mib"] = round(max(p.tree_sum_mib for p in peaks), 1)
        raw[f"{label}_processes"] = max(len(p.hwm_mib) for p in peaks)
        raw[f"{label}_build_s"] = round(min(p.elapsed_s for p in peaks), 2)
    return raw


def verdict_note(peak: float) -> str:
    ok = "yes" if peak < ABSOLUTE_LIMIT_MIB else "**NO**"
    return f"absolute: giant-input peak {peak:.0f} MiB < {ABSOLUTE_LIMIT_MIB} MiB: {ok}"


@dataclass(frozen=True)
class Measure:
    """How one executor's peak is taken and described."""

    executor: str
    figure: Callable[[Peak], float]
    roles: tuple[str, ...]
    what: str
    note: str = ""
    datasets: tuple[str, ...] = ("base", "giant")
    """Which datasets are built, one build each per round (``giant`` and ``base`` always)."""


def wait4_peak(peak: Peak) -> float:
    """The largest single process of the build (it reaps its video helper)."""
    return peak.maxrss_mib


def ray_side(peak: Peak) -> float:
    """Driver + the largest Ray worker + the largest video helper (each its own VmHWM):
    Ray's workers are not reaped by the build, so ``wait4`` does not see them."""
    return peak.role_max("driver") + peak.role_max("ray_worker") + peak.role_max("video_helper")


MEASURES = {
    "local": Measure("local", wait4_peak, ("driver", "video_helper"),
                     "peak RSS (wait4 ru_maxrss: build process and video helper)",
                     datasets=("base", "giant", "giant_only")),
    "ray": Measure("ray", ray_side, ("driver", "ray_worker", "video_helper", "ray_system"),
                   "driver + largest Ray worker + largest video helper peak RSS (each its "
                   "VmHWM), fresh local Ray,",
                   "tree_sum adds every process's own peak (gcs, raylet, ...): an upper bound, "
                   "as the peaks need not coincide"),
}  # fmt: skip


def memory_case(m: Measure, datasets: dict[str, Dataset], scratch: Path, repeat: int) -> CaseResult:
    """Peak RSS over normal + hostile lines against the same build over the normal lines."""
    chosen = {name: datasets[name] for name in m.datasets}
    runs, verdicts = rounds(chosen, scratch, m.executor, repeat, m.figure)
    figures = {name: [m.figure(p) for p in peaks] for name, peaks in runs.items()}
    ratio = statistics.median(figures["giant"]) / statistics.median(figures["base"])
    raw = peak_raw(figures) | tree_raw(runs, m.roles) | hostile_raw(verdicts)
    extra = ""
    if "giant_only" in figures:
        extra = (f"; the 6 GiB files alone: {max(figures['giant_only']):.0f} MiB (the near-limit "
                 "jpg is read whole by design: up to max_image_bytes more)")  # fmt: skip
    return CaseResult(
        name=f"memory: build over giant sparse media, {m.executor}: peak RSS vs without them",
        ratio=round(ratio, 3), target=f"<= {TARGET}",
        meaning=f"{m.what} of `shardify build` over normal + hostile lines (6 GiB sparse "
                "jpg/mp4, 60 MiB jpg and 768 MiB mp4 under 64 MiB / 1 GiB limits) / the same "
                "build over the normal lines only (medians of the rounds)",
        raw=raw, note="; ".join(p for p in (verdict_note(max(figures["giant"])) + extra, m.note) if p),
    )  # fmt: skip


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    """Every memory case; the datasets (with their sparse files) are removed after."""
    plan = Plan.of(smoke)
    workdir = workdir.resolve()
    scratch = workdir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    datasets = {"base": make_dataset_with(workdir / "base", plan, ()),
                "giant": make_dataset_with(workdir / "giant", plan, HOSTILE),
                "giant_only": make_dataset_with(workdir / "giant_only", plan, GIANT_ONLY)}  # fmt: skip
    try:
        return [memory_case(MEASURES[ex], datasets, scratch, plan.repeat) for ex in plan.executors]
    finally:
        for data in datasets.values():
            shutil.rmtree(data.root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_standalone(run, "memory", __doc__))
