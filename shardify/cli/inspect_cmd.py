"""``shardify inspect URL [--html report.html]``: summarise a built output, optionally as a
self-contained HTML report with a contact sheet of samples, charts and reject examples."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from shardify.errors import UsageError
from shardify.report import ReportOptions, collect_report, format_text, render_html
from shardify.storage import Location


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("inspect", help="summarise a built output; --html writes a visual report")
    add_location_args(parser)
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report here")
    parser.add_argument("--samples", type=_count, default=24, metavar="N",
                        help="samples on the HTML contact sheet (default 24; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shard and sample draw (default 0)")
    parser.add_argument("--max-shards", type=_shard_limit, default=4, metavar="N|all",
                        help="read at most N shards for modalities, frames, image sizes and "
                             "samples (default 4; 'all' reads every shard)")
    parser.add_argument("--rejects-per-reason", type=_count, default=5, metavar="N",
                        help="reject examples shown per reason in the HTML report (default 5)")
    parser.add_argument("--input", metavar="URL",
                        help="the dataset root the output was built from: shows rejected lines' raw text")
    parser.set_defaults(run=run)  # fmt: skip


def add_location_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the output location (local path or s3://bucket/prefix)")
    parser.add_argument("--storage-options", default="", metavar="JSON",
                        help='fsspec options as JSON, e.g. \'{"endpoint_url": "http://..."}\'')  # fmt: skip


def location_from(args: argparse.Namespace) -> Location:
    try:
        options = json.loads(args.storage_options) if args.storage_options else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--storage-options: not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise UsageError("--storage-options: must be a JSON object")
    return Location(args.url, options)


def run(args: argparse.Namespace) -> int:
    output = location_from(args)
    source: Optional[Location] = None
    if args.input:
        source = Location(args.input, output.storage_options)
    options = ReportOptions(
        samples=args.samples if args.html else 0, seed=args.seed,
        max_shards=args.max_shards, rejects_per_reason=args.rejects_per_reason if args.html else 0,
    )  # fmt: skip
    report = collect_report(output, options, source=source)
    print(format_text(report))
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html {args.html}: cannot write: {exc}") from None
        print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _shard_limit(text: str) -> Optional[int]:
    if text.strip().lower() == "all":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'all' or >= 1, got {value}")
    return value
