"""``shardify build CONFIG.yaml [--set KEY=VALUE ...] [--overwrite]``."""

from __future__ import annotations

import argparse
import os
import sys

from shardify.config import load_config
from shardify.pipeline import build
from shardify.progress import format_summary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("build", help="build shards, rejects.jsonl and manifest.json")
    add_config_args(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an output built with another config")  # fmt: skip
    parser.set_defaults(run=run)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the YAML config (minimal: input: and output:)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set shard.max_samples=500")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    report = build(config, overwrite=args.overwrite, progress=sys.stderr)
    print(format_summary(report.manifest, elapsed_s=report.elapsed_s, executor=report.executor,
                         output=str(config.output), resumed_shards=report.resumed_shards,
                         already_complete=report.already_complete,
                         appended_lines=report.appended_lines, cpus=os.cpu_count()))  # fmt: skip
    return 0
