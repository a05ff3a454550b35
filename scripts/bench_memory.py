"""Memory benchmarks: peak RSS of a build over hostile giant media files (issue 11).

A build once read a 6 GiB sparse ``huge.jpg`` whole (6.2 GB peak RSS). The dataset here has
a few normal lines (datagen images, videos, text) plus hostile lines whose media are sparse
files (no disk used): a 6 GiB ``huge.jpg`` and a 6 GiB ``huge.mp4`` (above
``validation.max_image_bytes`` = 64 MiB and ``max_video_bytes`` = 1 GiB: ``file_too_large``
from an fstat), and files just below the limits, a 60 MiB ``near_limit.jpg`` (read whole,
then refused by Pillow) and a 768 MiB ``near_limit.mp4`` (opened by FFmpeg in place).

Each case runs the real command (``python -m shardify build``) in a child process, twice per
round, interleaved: over that dataset and, as the baseline, over the same dataset without
the hostile lines. Peak RSS comes from the kernel, not from sampling: ``wait4``'s
``ru_maxrss`` (the build process and every descendant it reaped) and each process's
``VmHWM`` (its own high-water mark, read from /proc while it runs). The case fails (raises)
unless every hostile line got its expected reject code. ``python scripts/bench_memory.py
[--smoke]`` prints JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CaseResult, run_standalone  # noqa: E402

log = logging.getLogger("bench.memory")
MIB, GIB = 1 << 20, 1 << 30
IMAGE_LIMIT = 64 * MIB
VIDEO_LIMIT = 1 * GIB
ABSOLUTE_LIMIT_MIB = 2048
TARGET = 1.5
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}  # fmt: skip


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
GIANT = {"huge.jpg", "huge.mp4"}
"""The lines that must be ``file_too_large`` (the brief's check; the others must be read)."""


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


def hostile_lines() -> list[str]:
    """One JSONL line per hostile file, image lines as ``images``, video lines as ``video``."""
    from shardify.datagen import chat, image_item, text_item, video_item

    lines = []
    for h in HOSTILE:
        path = f"hostile/{h.name}"
        if h.kind == "image":
            doc: dict[str, Any] = {"messages": chat([image_item(), text_item("What?")], "This."),
                                   "images": [path]}  # fmt: skip
        else:
            doc = {"messages": chat([video_item(), text_item("What?")], "That."),
                   "video": {"path": path, "num_frames": 4}}  # fmt: skip
        lines.append(json.dumps(doc))
    return lines


def make_datasets(workdir: Path, plan: Plan) -> tuple[Path, Path]:
    """``giant/`` (normal lines + hostile lines, sparse files made) and ``base/`` (the same
    normal lines only). Both from the same seed, so their normal lines are identical."""
    from shardify.datagen import DatasetSpec, make_dataset

    giant, base = workdir / "giant", workdir / "base"
    for root in (giant, base):
        shutil.rmtree(root, ignore_errors=True)
    spec = dict(image_samples=plan.image_samples, video_samples=plan.video_samples,
                text_samples=2, image_size=(640, 480), test_split=False)  # fmt: skip
    make_dataset(base, DatasetSpec(**spec))  # type: ignore[arg-type]
    make_dataset(giant, DatasetSpec(**spec, extra_lines=hostile_lines()))  # type: ignore[arg-type]
    (giant / "hostile").mkdir()
    for h in HOSTILE:
        with open(giant / "hostile" / h.name, "wb") as handle:  # sparse: no disk used
            handle.truncate(h.size)
    return giant, base


def remove_sparse(giant: Path) -> None:
    shutil.rmtree(giant / "hostile", ignore_errors=True)


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
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "shardify", "build", str(config)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    watcher = TreeWatcher(proc.pid)
    watcher.start()
    killer = threading.Timer(timeout, proc.kill)
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


# --- checking the verdicts ----------------------------------------------------------------


def check_verdicts(root: Path, out: Path) -> dict[str, str]:
    """Hostile file -> its reject code; raises unless each got one it may get and no normal
    line was rejected (a build that dropped the lines some other way measures nothing)."""
    from shardify.manifest import read_rejects
    from shardify.storage import Location

    lines = (root / "train.jsonl").read_bytes().splitlines()
    first = len(lines) - len(HOSTILE) + 1  # the hostile lines are the last ones, in order
    reasons = {r["line"]: r["reason"] for r in read_rejects(Location(str(out)))}
    got = {h.name: reasons.get(first + i, "accepted") for i, h in enumerate(HOSTILE)}
    wrong = [f"{h.name}: {got[h.name]} (expected {'/'.join(sorted(h.verdicts))})"
             for h in HOSTILE if got[h.name] not in h.verdicts]  # fmt: skip
    stray = sorted(line for line in reasons if line < first)
    if wrong or stray:
        raise RuntimeError(f"hostile build {out}: wrong verdicts {wrong}; normal lines "
                           f"rejected: {stray} ({[reasons[n] for n in stray]})")  # fmt: skip
    return got


def check_clean(out: Path) -> None:
    """The baseline build must reject nothing."""
    manifest = json.loads((out / "manifest.json").read_text())
    if manifest["splits"]["train"]["rejected"]:
        raise RuntimeError(f"baseline build {out} rejected normal lines: see its rejects.jsonl")


# --- cases --------------------------------------------------------------------------------


Figure = dict[str, list[float]]


def rounds(giant: Path, base: Path, scratch: Path, executor: str, repeat: int
           ) -> tuple[list[Peak], list[Peak], dict[str, str]]:  # fmt: skip
    """``repeat`` rounds of (baseline, giant) builds, interleaved; the verdicts of the last."""
    giants, bases, verdicts = [], [], {}
    for i in range(repeat):
        out = scratch / f"base-{executor}"
        bases.append(measured_build(base, out, executor))
        check_clean(out)
        out = scratch / f"giant-{executor}"
        giants.append(measured_build(giant, out, executor))
        verdicts = check_verdicts(giant, out)
        log.info("%s round %d: peak RSS base %.0f MiB, giant %.0f MiB", executor, i + 1,
                 bases[-1].maxrss_mib, giants[-1].maxrss_mib)  # fmt: skip
    return giants, bases, verdicts


def hostile_raw(verdicts: dict[str, str]) -> dict[str, Any]:
    return {"hostile": {h.name: f"{h.size / MIB:.0f} MiB sparse -> {verdicts[h.name]}" for h in HOSTILE},
            "max_image_bytes_mib": IMAGE_LIMIT / MIB, "max_video_bytes_mib": VIDEO_LIMIT / MIB}  # fmt: skip


def peak_raw(giant: list[float], base: list[float]) -> dict[str, Any]:
    """The figures behind a ratio: each round's peak (MiB) and the absolute check."""
    peak = max(giant)
    return {"giant_peak_mib": round(peak, 1), "base_peak_mib": round(max(base), 1),
            "giant_rounds_mib": [round(x, 1) for x in giant],
            "base_rounds_mib": [round(x, 1) for x in base],
            "absolute_limit_mib": ABSOLUTE_LIMIT_MIB, "absolute_ok": peak < ABSOLUTE_LIMIT_MIB}  # fmt: skip


def tree_raw(giants: list[Peak], bases: list[Peak], roles: tuple[str, ...]) -> dict[str, Any]:
    """Per-role VmHWM maxima (read from /proc while the processes ran, so a rise in a
    process's last 50 ms can be missed), the tree's sum and the build times."""
    raw: dict[str, Any] = {}
    for label, peaks in (("giant", giants), ("base", bases)):
        raw |= {f"{label}_{role}_hwm_mib": round(max(p.role_max(role) for p in peaks), 1)
                for role in roles}  # fmt: skip
        raw[f"{label}_tree_sum_mib"] = round(max(p.tree_sum_mib for p in peaks), 1)
        raw[f"{label}_processes"] = max(len(p.hwm_mib) for p in peaks)
        raw[f"{label}_build_s"] = round(min(p.elapsed_s for p in peaks), 2)
    return raw


def verdict_note(peak: float) -> str:
    ok = "yes" if peak < ABSOLUTE_LIMIT_MIB else "**NO**"
    return f"absolute: giant-input peak {peak:.0f} MiB < {ABSOLUTE_LIMIT_MIB} MiB: {ok}"


def local_case(giant: Path, base: Path, scratch: Path, repeat: int) -> CaseResult:
    """Local executor: the build process and its video helper, from ``wait4``."""
    giants, bases, verdicts = rounds(giant, base, scratch, "local", repeat)
    g = [p.maxrss_mib for p in giants]
    b = [p.maxrss_mib for p in bases]
    peak = max(g)
    raw = (
        peak_raw(g, b) | tree_raw(giants, bases, ("driver", "video_helper")) | hostile_raw(verdicts)
    )
    return CaseResult(
        name="memory: build over giant sparse media, local: peak RSS vs without them",
        ratio=round(statistics.median(g) / statistics.median(b), 3), target=f"<= {TARGET}",
        meaning="peak RSS (wait4 ru_maxrss: build process and video helper) of `shardify build` "
                "over normal + hostile lines (6 GiB sparse jpg/mp4, near-limit files) / the same "
                "build over the normal lines only (medians of the rounds)",
        raw=raw, note=verdict_note(peak))  # fmt: skip


def ray_side(peak: Peak) -> float:
    """Driver + the largest Ray worker + the largest video helper (each its own VmHWM)."""
    return peak.role_max("driver") + peak.role_max("ray_worker") + peak.role_max("video_helper")


def ray_case(giant: Path, base: Path, scratch: Path, repeat: int) -> CaseResult:
    """Ray executor: per-process peaks from /proc (the tree is not one process)."""
    giants, bases, verdicts = rounds(giant, base, scratch, "ray", repeat)
    g, b = [ray_side(p) for p in giants], [ray_side(p) for p in bases]
    peak = max(g)
    roles = ("driver", "ray_worker", "video_helper", "ray_system")
    raw = peak_raw(g, b) | tree_raw(giants, bases, roles) | hostile_raw(verdicts)
    raw |= {"giant_wait4_maxrss_mib": round(max(p.maxrss_mib for p in giants), 1),
            "base_wait4_maxrss_mib": round(max(p.maxrss_mib for p in bases), 1)}  # fmt: skip
    return CaseResult(
        name="memory: build over giant sparse media, ray: peak RSS vs without them",
        ratio=round(statistics.median(g) / statistics.median(b), 3), target=f"<= {TARGET}",
        meaning="driver + largest Ray worker + largest video helper peak RSS (each its VmHWM) "
                "of `shardify build` with a fresh local Ray over normal + hostile lines / the "
                "same over the normal lines only (medians of the rounds)",
        raw=raw, note=verdict_note(peak) + "; tree_sum adds every process's own peak "
                      "(gcs, raylet, ...): an upper bound, as the peaks need not coincide")  # fmt: skip


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    """Every memory case; sparse files are made in ``workdir`` and removed after."""
    plan = Plan.of(smoke)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    giant, base = make_datasets(workdir, plan)
    cases = {"local": local_case, "ray": ray_case}
    try:
        return [cases[ex](giant, base, scratch, plan.repeat) for ex in plan.executors]
    finally:
        remove_sparse(giant)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_standalone(run, "memory", __doc__))
