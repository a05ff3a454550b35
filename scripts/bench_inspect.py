"""Inspect benchmarks: the HTML report stays bounded as an output grows, and costs little
more than streaming the shards it reads.

- ``inspect_bounded``: time of the default HTML report (4 shards drawn, 24 thumbnails) of an
  output with 4x as many shards, against the same report of the smaller output. Bounded
  means the ratio stays near 1 whatever the output size.
- ``inspect_summary_overhead``: the text summary (same 4 shards, no thumbnails) against a
  bare ``tarfile`` stream that reads every member of those shards (the least any reader
  must do): JSON parsing, image headers and statistics on top of I/O.

Both outputs are real builds of a generated dataset (local executor). Runs are interleaved
and each figure is the best of several. ``python scripts/bench_inspect.py [--smoke]``
prints the results as JSON.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import CaseResult, best_time, run_standalone  # noqa: E402

import shardify  # noqa: E402
from shardify.datagen import DatasetSpec, make_dataset  # noqa: E402
from shardify.report import ReportOptions, collect_report, format_text, render_html  # noqa: E402
from shardify.storage import Location  # noqa: E402

OPTIONS = ReportOptions()  # the CLI's defaults for --html
SUMMARY = ReportOptions(samples=0, rejects_per_reason=0)  # the CLI's defaults without --html


def _build(workdir: Path, name: str, samples: int, per_shard: int) -> Path:
    source = make_dataset(workdir / f"{name}-ds", DatasetSpec(
        image_samples=samples, video_samples=max(1, samples // 20), text_samples=max(1, samples // 20),
        image_size=(320, 240), test_split=False))  # fmt: skip
    out = workdir / f"{name}-out"
    shutil.rmtree(out, ignore_errors=True)
    shardify.build(shardify.load_config({"input": str(source), "output": str(out),
                                         "executor": {"kind": "local"}, "shard": {"max_samples": per_shard}}))  # fmt: skip
    return out


def _report(out: Path) -> int:
    return len(render_html(collect_report(Location(str(out)), OPTIONS)))


def _summary(out: Path) -> int:
    return len(format_text(collect_report(Location(str(out)), SUMMARY)))


def _stream(out: Path, names: list[str]) -> int:
    total = 0
    for name in names:
        with open(out / name, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for info in tar:
                handle = tar.extractfile(info)
                total += len(handle.read()) if handle is not None else 0
    return total


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    workdir.mkdir(parents=True, exist_ok=True)
    per_shard, small = (10, 40) if smoke else (50, 400)
    small_out = _build(workdir, "small", small, per_shard)
    large_out = _build(workdir, "large", small * 4, per_shard)
    repeat = 1 if smoke else 5
    chosen = [s.name for s in collect_report(Location(str(large_out)), OPTIONS).shards_read]
    t_small = best_time(lambda: _report(small_out), repeat=repeat)
    t_large = best_time(lambda: _report(large_out), repeat=repeat)
    t_stream = best_time(lambda: _stream(large_out, chosen), repeat=repeat)
    t_summary = best_time(lambda: _summary(large_out), repeat=repeat)
    shards = {n: len(list(o.glob("*.tar"))) for n, o in (("small", small_out), ("large", large_out))}
    raw = {"report_small_s": t_small, "report_large_s": t_large, "stream_chosen_s": t_stream,
           "summary_large_s": t_summary,
           "shards": shards, "shards_read": len(chosen), "samples_shown": OPTIONS.samples}  # fmt: skip
    return [
        CaseResult(name="inspect_bounded", ratio=t_large / t_small, target="<= 1.5", raw=raw,
                   meaning=f"HTML report time, {shards['large']}-shard output / {shards['small']}-shard output"),
        CaseResult(name="inspect_summary_overhead", ratio=t_summary / t_stream, target="<= 5", raw=raw,
                   meaning="text summary time / bare tarfile stream of the same shards"),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_standalone(run, "inspect", __doc__))
