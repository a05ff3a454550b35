"""Build benchmarks: image pass-through against ``tar cf``, full decode against a Pillow pool.

Each shardify figure is timed against a baseline on the same files in the same run:

- pass-through, ``validation.decode: header``: marginal wall time (2N samples minus N, so
  fixed start-up cancels) against the same for ``tar cf`` of the same files, with the Ray
  executor and the local one;
- the fixed start-up of each executor on its own: the wall time of a one-shard build with a
  fresh executor (for Ray: interpreter, ``ray.init``, worker start, planning, shutdown);
- full decode: marginal wall time against a ``multiprocessing`` pool with one process per
  core running ``Image.open(...).convert("RGB")`` over the same files.

The start-up rows run the real command (``python -m shardify build``, fresh process). The
marginal figures call ``shardify.build`` in this process, where one Ray instance is already
running (the Ray executor reuses it): a build joining or starting Ray varies by seconds on a
busy machine, more than the per-sample time being measured. Runs are interleaved (baseline, shardify, baseline, ...) and each figure is the best of
several. ``python scripts/bench_build.py [--smoke]`` prints the results as JSON;
``scripts/profile_build.py`` profiles the same builds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CaseResult, run_standalone  # noqa: E402

log = logging.getLogger("bench.build")
SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720))
SHARD_SAMPLES = 100
"""Samples per shard: enough shards that every core has work (2N / 100 tasks)."""
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class Plan:
    """How much data and how many repeats one run uses."""

    n: int
    unique: int
    repeat: int
    executors: tuple[str, ...]
    """Executors of the header case; the first one also runs the full-decode case."""
    shard_samples: int = SHARD_SAMPLES

    @classmethod
    def of(cls, smoke: bool) -> Plan:
        if smoke:
            # No Ray in smoke mode: its start-up alone would take most of CI's budget.
            return cls(n=24, unique=8, repeat=1, executors=("local",), shard_samples=8)
        return cls(n=2000, unique=160, repeat=3, executors=("ray", "local"))


# --- data ---------------------------------------------------------------------------------


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG (~50-200 KB): datagen's shapes plus grain, so it compresses like a
    photo rather than a flat drawing."""
    import numpy as np
    from PIL import Image

    from shardify.datagen import make_image

    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(io.BytesIO(make_image(width, height, seed=seed))), dtype=np.int16)
    coarse = rng.normal(0, 12, (height // 4, width // 4)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    grain = rng.integers(-6, 7, (height, width, 1))
    pixels = np.clip(base + blotches[:, :, None] + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=85)
    return out.getvalue()


def make_data(root: Path, plan: Plan) -> dict[str, list[str]]:
    """``root/images/*.jpg`` (2N files) and three splits over them: ``half`` (the first N),
    ``full`` (all 2N) and ``tiny`` (one shard's worth, for start-up). Returns each split's
    image paths. Reused when already made."""
    import orjson

    from shardify.datagen import chat, image_item, text_item

    total = 2 * plan.n
    paths = [f"images/img_{i:06d}.jpg" for i in range(total)]
    splits = {"half": paths[: plan.n], "full": paths, "tiny": paths[: plan.shard_samples]}
    stamp = root / f".made-{total}-{plan.unique}-{plan.shard_samples}"
    if stamp.exists():
        return splits
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    pool = [photo_jpeg(*SIZES[i % len(SIZES)], seed=i) for i in range(plan.unique)]
    for i, path in enumerate(paths):
        (root / path).write_bytes(pool[i % len(pool)])
    for split, members in splits.items():
        lines = [orjson.dumps({"messages": chat([image_item(), text_item(f"What is in {p}?")],
                                                "Shapes."), "images": [p]}) for p in members]  # fmt: skip
        (root / f"{split}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        (root / f"{split}.files").write_text("\n".join(members) + "\n")
    stamp.touch()
    return splits


# --- what is timed ------------------------------------------------------------------------


def time_call(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@contextlib.contextmanager
def shared_ray(wanted: bool) -> Iterator[None]:
    """A local Ray (127.0.0.1 only) in this process, reused by every in-process build."""
    if not wanted:
        yield
        return
    for key, value in {**RAY_ENV, "RAY_AUTH_MODE": "disabled"}.items():
        os.environ.setdefault(key, value)
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, _node_ip_address="127.0.0.1")  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def shardify_cli(root: Path, out: Path, split: str, *, executor: str, decode: str,
                 shard_samples: int) -> None:  # fmt: skip
    """``python -m shardify build`` in a fresh process, into a fresh output."""
    shutil.rmtree(out, ignore_errors=True)
    config = out.parent / f"{out.name}.yaml"
    config.write_text(json.dumps({"input": str(root), "output": str(out)}))
    sets = {"splits": f"[{split}]", "executor.kind": executor, "validation.decode": decode,
            "shard.max_samples": shard_samples}  # fmt: skip
    cmd = [sys.executable, "-m", "shardify", "build", str(config)]
    cmd += [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, **RAY_ENV}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"shardify build failed ({proc.returncode}): {proc.stderr[-2000:]}")
    check_manifest(json.loads((out / "manifest.json").read_text()), split, out)


def shardify_inprocess(root: Path, out: Path, split: str, *, executor: str, decode: str,
                       shard_samples: int) -> None:  # fmt: skip
    """``shardify.build`` in this process (reusing its Ray), into a fresh output."""
    from shardify.config import load_config
    from shardify.pipeline import build

    shutil.rmtree(out, ignore_errors=True)
    config = load_config({"input": str(root), "output": str(out), "splits": [split],
                          "executor": {"kind": executor}, "validation": {"decode": decode},
                          "shard": {"max_samples": shard_samples}})  # fmt: skip
    check_manifest(build(config).manifest.to_json(), split, out)


def check_manifest(manifest: dict[str, Any], split: str, out: Path) -> None:
    info = manifest["splits"][split]
    if info["rejected"]:
        raise RuntimeError(f"shardify rejected {info['rejected']} generated images: see {out}")


def tar_files(root: Path, out: Path, split: str) -> None:
    """``tar cf`` of exactly the split's files (the floor for copying bytes into a tar)."""
    out.unlink(missing_ok=True)
    subprocess.run(["tar", "cf", str(out), "-C", str(root), "-T", str(root / f"{split}.files")],
                   check=True)  # fmt: skip


def _decode(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").size[0]


def pillow_pool(root: Path, paths: list[str]) -> None:
    """Decode every file to RGB with one process per core (the peer for a decoding build)."""
    files = [str(root / p) for p in paths]
    # spawn: forking a process that runs a Ray driver (gRPC threads) is not safe.
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.map(_decode, files, chunksize=16)


# --- measuring ----------------------------------------------------------------------------

Timings = dict[str, dict[str, float]]


def measure(runs: dict[str, Callable[[str], None]], repeat: int,
            splits: tuple[str, ...] = ("half", "full")) -> Timings:  # fmt: skip
    """Best wall time of each run on each split; runs interleaved so noise hits all alike."""
    best: Timings = {name: {split: float("inf") for split in splits} for name in runs}
    for _ in range(repeat):
        for split in splits:
            for name, fn in runs.items():
                elapsed = time_call(lambda: fn(split))  # noqa: B023 - called at once
                best[name][split] = min(best[name][split], elapsed)
                log.info("%s %s: %.2f s", name, split, elapsed)
    return best


def marginal(t: dict[str, float]) -> float:
    """Time for the second N samples: T(2N) - T(N), floored at 1 ms against noise."""
    return max(t["full"] - t["half"], 1e-3)


CAUSES = {
    "header": "cause: per image, Python work on one core per worker (path realpath, Pillow "
              "header parse, sha256, tar header, write; profile in docs/benchmarks.md) against "
              "tar's copy in C",
    "ray": "Ray workers run at nice 15 (Ray's default), so other load on the machine takes "
           "their CPU first",
    "startup": "cause: ray.init (4-8 s on this machine), worker start and shutdown; the local "
               "executor starts in well under a second",
    "decode": "cause: Pillow's JPEG decode is the same code in both; the rest is the per-image "
              "work of the header case and Ray's task overhead",
}


def cause(met: bool, *keys: str) -> str:
    """The known cause of a miss (from the profiles), written next to it."""
    return "" if met else "; ".join(CAUSES[k] for k in keys)


def busy_note() -> str:
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    return f"load {load:.1f} on {cores} cores (noisy)" if load > 0.8 * cores else ""


def join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# --- cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """Where one run's data and scratch output are."""

    root: Path
    scratch: Path
    plan: Plan
    splits: dict[str, list[str]]

    def build(self, name: str, executor: str, decode: str, *, fresh: bool = False
              ) -> Callable[[str], None]:  # fmt: skip
        """A timed run: build a split with ``executor``, in this process or (fresh) the CLI."""
        how = shardify_cli if fresh else shardify_inprocess
        return lambda split: how(self.root, self.scratch / name, split, executor=executor,
                                 decode=decode, shard_samples=self.plan.shard_samples)  # fmt: skip


def header_cases(b: Bench) -> list[CaseResult]:
    """Pass-through with a header check, per executor, against ``tar cf``."""
    runs = {"tar": lambda split: tar_files(b.root, b.scratch / "tar.tar", split),
            **{ex: b.build(f"hdr-{ex}", ex, "header") for ex in b.plan.executors}}  # fmt: skip
    t = measure(runs, b.plan.repeat)
    tar_m, n, rows = marginal(t["tar"]), b.plan.n, []
    for executor in b.plan.executors:
        m = marginal(t[executor])
        raw = {"n": n, "shardify_N_s": t[executor]["half"], "shardify_2N_s": t[executor]["full"],
               "shardify_marginal_s": m, "tar_N_s": t["tar"]["half"], "tar_2N_s": t["tar"]["full"],
               "tar_marginal_s": tar_m, "shardify_us_per_image": m / n * 1e6,
               "tar_us_per_image": tar_m / n * 1e6}  # fmt: skip
        ray = ("ray",) if executor == "ray" else ()
        joined = "in-process, Ray already running; " if executor == "ray" else "in-process; "
        rows.append(CaseResult(
            name=f"build images, header check, {executor}: marginal time vs tar cf",
            ratio=m / tar_m, target="<= 2.0",
            meaning=f"{joined}shardify build (T(2N) - T(N)) / tar cf of the same files "
                    "(T(2N) - T(N))",
            raw=raw, note=join(cause(m / tar_m <= 2.0, "header", *ray), busy_note())))  # fmt: skip
    return rows


def startup_cases(b: Bench) -> list[CaseResult]:
    """The fixed start-up of each executor: a one-shard build, fresh executor each time."""
    runs = {ex: b.build(f"tiny-{ex}", ex, "header", fresh=True) for ex in b.plan.executors}
    t = measure(runs, max(1, b.plan.repeat - 1), splits=("tiny",))
    rows = []
    for executor in b.plan.executors:
        fixed = t[executor]["tiny"]
        rows.append(CaseResult(
            name=f"build fixed start-up, {executor} (seconds, not a ratio)",
            ratio=fixed, target="<= 5.0",
            meaning=f"wall time of a {b.plan.shard_samples}-sample (one-shard) build with a "
                    "fresh executor: interpreter, executor start, planning, shutdown",
            raw={"samples": b.plan.shard_samples, "wall_s": fixed},
            note=join(cause(fixed <= 5.0, "startup"), busy_note())))  # fmt: skip
    return rows


def decode_case(b: Bench) -> CaseResult:
    """Full decode of every image against a Pillow pool on all cores."""
    executor = b.plan.executors[0]
    runs = {"pillow": lambda split: pillow_pool(b.root, b.splits[split]),
            "shardify": b.build("dec", executor, "full")}  # fmt: skip
    t = measure(runs, b.plan.repeat)
    m, base = marginal(t["shardify"]), marginal(t["pillow"])
    raw = {"n": b.plan.n, "cores": os.cpu_count(), "shardify_N_s": t["shardify"]["half"],
           "shardify_2N_s": t["shardify"]["full"], "shardify_marginal_s": m,
           "pillow_N_s": t["pillow"]["half"], "pillow_2N_s": t["pillow"]["full"],
           "pillow_marginal_s": base}  # fmt: skip
    ray = ("ray",) if executor == "ray" else ()
    smoke = "" if ray else "smoke: local executor (1 core), to keep it short"
    return CaseResult(
        name=f"build images, full decode, {executor}: marginal time vs Pillow pool",
        ratio=m / base, target="<= 1.3",
        meaning="shardify build, validation.decode=full (T(2N) - T(N)) / multiprocessing pool "
                "of Image.open().convert('RGB') on all cores (T(2N) - T(N))",
        raw=raw, note=join(smoke, "shardify's check skips convert()'s pixel copy of an RGB image",
                           cause(m / base <= 1.3, "decode", *ray), busy_note()))  # fmt: skip


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    """Every build case; data is made under ``workdir`` (and reused by the next run)."""
    plan = Plan.of(smoke)
    root = workdir / f"images-{2 * plan.n}"
    splits = make_data(root, plan)
    scratch = workdir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        bench = Bench(root, scratch, plan, splits)
        rows = startup_cases(bench)
        with shared_ray("ray" in plan.executors):
            rows = header_cases(bench) + rows + [decode_case(bench)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(run_standalone(run, "build", __doc__))
