"""What every benchmark case module shares: timing and the result record.

A case module ``scripts/bench_<area>.py`` exposes ``run(workdir: Path, smoke: bool) ->
list[CaseResult]``; ``scripts/bench.py`` runs them all and writes the results table.
Figures are ratios against a baseline measured in the same run (the machine is noisy).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass
class CaseResult:
    """One benchmark case: a ratio to its baseline and whether it meets the target."""

    name: str
    ratio: float
    target: str
    """E.g. "<= 1.3" or ">= 3.0": the ratio we aim for."""
    meaning: str
    """What the ratio is, e.g. "shardify time / PyAV decode-to-last-frame time"."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The raw figures (seconds, bytes, counts) behind the ratio."""
    note: str = ""

    @property
    def met(self) -> bool:
        op, _, value = self.target.partition(" ")
        bound = float(value)
        return self.ratio <= bound if op == "<=" else self.ratio >= bound

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


def best_time(fn: Callable[[], Any], *, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs of ``fn`` in seconds (least disturbed by noise)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_standalone(run: Callable[[Path, bool], list[CaseResult]], area: str, doc: Optional[str]) -> int:
    """``python scripts/bench_<area>.py [--smoke] [--workdir DIR]``: one module, JSON out."""
    parser = argparse.ArgumentParser(description=(doc or area).strip().splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, finishes in seconds")
    parser.add_argument("--workdir", type=Path, default=Path(".bench") / area,
                        help="where data is generated (reused by the next run)")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    results = run(args.workdir, args.smoke)
    print(json.dumps([r.to_json() for r in results], indent=2))
    return 0
