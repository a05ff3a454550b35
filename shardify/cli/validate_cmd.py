"""``shardify validate CONFIG.yaml``: check every sample, write rejects.jsonl, no shards."""

from __future__ import annotations

import argparse
import sys

from shardify.cli.build_cmd import add_config_args
from shardify.config import load_config
from shardify.pipeline import validate
from shardify.progress import format_summary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("validate", help="check every sample and write rejects.jsonl only")
    add_config_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    report = validate(config, progress=sys.stderr)
    print(format_summary(report.manifest, elapsed_s=report.elapsed_s, executor=report.executor,
                         output=config.output, validate_only=True))  # fmt: skip
    return 0
