"""What binding records to their input costs: planning time with hashing on vs off, and the
manifest bytes per shard against the round-1 shard entry.

- ``planning_hash_cost``: the driver's planning pass (``planner.plan_split``: stream, parse
  every line, cut shards) over a 1M-line text-only JSONL, with the input hashed as a build
  does (a fast sha256 pass over the file, then an 8-byte CRC-32+length per line written to a
  file while planning) against the same planning with no hashing. Interleaved, best of 3.
- ``manifest_bytes_per_shard``: the bytes one shard adds to manifest.json as written
  (indented) now, against the four keys round 1 wrote (name, samples, bytes, sha256), from a
  real build.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CaseResult, best_time, run_standalone  # noqa: E402

from shardify.config import load_config  # noqa: E402
from shardify.datagen import DatasetSpec, chat, make_dataset, text_item  # noqa: E402
from shardify.inputs import LineMarks, digest_input  # noqa: E402
from shardify.pipeline import build  # noqa: E402
from shardify.planner import plan_split  # noqa: E402
from shardify.storage import Location  # noqa: E402

log = logging.getLogger("bench.records")
ROUND_1_KEYS = ("name", "samples", "bytes", "sha256")


def _jsonl(root: Path, lines: int) -> Path:
    path = root / "train.jsonl"
    if path.exists() and sum(1 for _ in open(path, "rb")) == lines:
        return path
    root.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for i in range(lines):
            doc = {"messages": chat([text_item(f"question {i}: what is {i} + {i}?")], f"it is {2 * i}")}
            handle.write(orjson.dumps(doc) + b"\n")
    return path


def _plan(root: Path, hashed: bool) -> int:
    config = load_config({"input": str(root), "output": str(root.parent / "unused"),
                          "shard": {"max_samples": 1000}})  # fmt: skip
    source = Location(str(root))
    with tempfile.TemporaryFile() as lines_out:
        marks = LineMarks(lines_out) if hashed else None
        tasks = len(list(plan_split(source, "train", config, marks=marks)))
        if hashed:  # the fast pass a build makes before planning: sha256 of the whole file
            digest_input(source, "train.jsonl")
        return tasks


def _planning_case(workdir: Path, smoke: bool) -> CaseResult:
    lines = 20_000 if smoke else 1_000_000
    root = workdir / f"text-{lines}"
    size = _jsonl(root, lines).stat().st_size
    repeat = 1 if smoke else 3
    off = on = float("inf")
    for _ in range(repeat):  # interleaved: the machine's noise hits both alike
        off = min(off, best_time(lambda: _plan(root, False), repeat=1))
        on = min(on, best_time(lambda: _plan(root, True), repeat=1))
    raw = {"lines": lines, "jsonl_bytes": size, "plan_hash_off_s": off, "plan_hash_on_s": on,
           "lines_per_s_off": lines / off, "lines_per_s_on": lines / on}  # fmt: skip
    return CaseResult(name="planning_hash_cost", ratio=on / off, target="<= 1.15", raw=raw,
                      meaning=f"planning time of a {lines:,}-line JSONL, input hashed / not hashed")


def _manifest_case(workdir: Path, smoke: bool) -> CaseResult:
    spec = DatasetSpec(image_samples=20 if smoke else 200, video_samples=0, text_samples=10, test_split=False)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = make_dataset(Path(tmp) / "ds", spec)
        out = Path(tmp) / "out"
        build(load_config({"input": str(root), "output": str(out), "shard": {"max_samples": 10},
                           "executor": {"kind": "local"}}))  # fmt: skip
        manifest = orjson.loads((out / "manifest.json").read_bytes())
        records = sorted((out / "_shardify" / "done").iterdir())
        done_bytes = sum(os.path.getsize(p) for p in records) / len(records)
    shards = manifest["splits"]["train"]["shards"]
    now = sum(len(orjson.dumps(s, option=orjson.OPT_INDENT_2)) for s in shards) / len(shards)
    old = sum(len(orjson.dumps({k: s[k] for k in ROUND_1_KEYS}, option=orjson.OPT_INDENT_2))
              for s in shards) / len(shards)  # fmt: skip
    split_input = len(orjson.dumps(manifest["splits"]["train"]["input"], option=orjson.OPT_INDENT_2))
    raw = {"shards": len(shards), "bytes_per_shard_now": now, "bytes_per_shard_round1": old,
           "bytes_added_per_shard": now - old, "split_input_record_bytes": split_input,
           "done_record_bytes_per_shard": done_bytes}  # fmt: skip
    return CaseResult(name="manifest_bytes_per_shard", ratio=now / old, target="<= 4.0", raw=raw,
                      meaning="manifest.json bytes per shard entry now / the round-1 entry (4 keys)")


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    workdir.mkdir(parents=True, exist_ok=True)
    return [_planning_case(workdir, smoke), _manifest_case(workdir, smoke)]


if __name__ == "__main__":
    sys.exit(run_standalone(run, "records", __doc__))
