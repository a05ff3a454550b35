"""``shardify validate CONFIG.yaml``: check every sample, no shards; report on the terminal.

Only ``input:`` is needed. With ``output:`` set (and not holding a build) rejects.jsonl and
warnings.jsonl are written there too; ``--report FILE`` writes the rejects to FILE.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from shardify.cli.build_cmd import add_config_args
from shardify.config import load_config
from shardify.pipeline import validate
from shardify.progress import format_summary
from shardify.schema import RejectRecord
from shardify.storage import Location


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("validate", help="check every sample (no shards); print the first rejects")
    add_config_args(parser)
    parser.add_argument("--show", type=int, default=10, metavar="N",
                        help="print the first N rejects (default 10; 0: none)")  # fmt: skip
    parser.add_argument("--report", metavar="FILE", default=None,
                        help="write every reject to FILE, one JSON line each (as rejects.jsonl)")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    report = validate(config, progress=sys.stderr)
    source = Location(config.input, config.storage_options)
    for reject in report.rejects[: max(args.show, 0)]:
        print(f"{source.display(reject.split + '.jsonl')}:{reject.line}: {reject.reason}: {reject.detail}")
    if len(report.rejects) > args.show > 0:
        print(f"... and {len(report.rejects) - args.show} more")
    if args.report:
        _write_report(args.report, report.rejects)
    where = config.output if report.written and config.output else (args.report or "")
    print(format_summary(report.manifest, elapsed_s=report.elapsed_s, executor=report.executor,
                         output=where, validate_only=True, written=report.written))  # fmt: skip
    return 0


def _write_report(path: str, rejects: tuple[RejectRecord, ...]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        for reject in rejects:
            handle.write(orjson.dumps(reject.to_json()) + b"\n")
    os.replace(tmp, path)
