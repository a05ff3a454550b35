"""Profile the build paths that ``bench_build.py`` measures, with pyinstrument.

Builds the 2N split of the benchmark's generated images in-process with the local executor
(the same ``build_shard`` a Ray worker runs), once with ``validation.decode: header`` and once
with ``full``, and writes one text profile per case:

    .venv/bin/python scripts/profile_build.py [--smoke] [--workdir .bench/build]

For the Ray side, profile the real command with py-spy (workers included):
``py-spy record --subprocesses --format raw -o ray.txt -- python -m shardify build CFG``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import Plan, make_data  # noqa: E402


def profile(workdir: Path, smoke: bool) -> list[Path]:
    """Write ``profile-build-{header,full}.txt`` under ``workdir``; return their paths."""
    from pyinstrument import Profiler

    from shardify.config import load_config
    from shardify.pipeline import build

    plan = Plan.of(smoke)
    root = workdir / f"images-{2 * plan.n}"
    make_data(root, plan)
    written = []
    for decode in ("header", "full"):
        out = workdir / "scratch" / f"profile-{decode}"
        shutil.rmtree(out, ignore_errors=True)
        config = load_config({"input": str(root), "output": str(out), "splits": ["full"],
                              "executor": {"kind": "local"}, "validation": {"decode": decode},
                              "shard": {"max_samples": plan.shard_samples}})  # fmt: skip
        profiler = Profiler(interval=0.001)
        with profiler:
            build(config)
        path = workdir / f"profile-build-{decode}.txt"
        path.write_text(profiler.output_text(unicode=False, color=False))
        written.append(path)
        shutil.rmtree(out, ignore_errors=True)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke-size data (seconds)")
    parser.add_argument("--workdir", type=Path, default=Path(".bench") / "build")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for path in profile(args.workdir, args.smoke):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
