"""``shardify inspect URL``: a summary of a built output (from its manifest)."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from shardify.errors import UsageError
from shardify.manifest import read_manifest
from shardify.storage import Location


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("inspect", help="summarise a built output")
    add_location_args(parser)
    parser.set_defaults(run=run)


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
    print(summarize(read_manifest(output), output.display("")))
    return 0


def summarize(manifest: dict[str, Any], where: str) -> str:
    lines = [f"{where}  ({manifest['format']}, shardify {manifest['shardify_version']})"]
    for split, info in manifest["splits"].items():
        sizes = [s["bytes"] for s in info["shards"]] or [0]
        counts = [s["samples"] for s in info["shards"]] or [0]
        lines.append(
            f"{split}: {info['lines']} lines -> {info['samples']} samples, "
            f"{info['rejected']} rejected, {info['blank']} blank; {len(info['shards'])} shards"
        )
        lines.append(
            f"  shard bytes min/median/max: {min(sizes)}/{int(statistics.median(sizes))}/{max(sizes)}; "
            f"samples per shard min/median/max: {min(counts)}/{int(statistics.median(counts))}/{max(counts)}"
        )
        lines.append(f"  images: {info.get('images', 0)}  video frames: {info.get('frames', 0)}")
        for reason, count in info.get("rejects_by_reason", {}).items():
            lines.append(f"  rejected {reason}: {count}")
        for name, count in info.get("warnings", {}).items():
            lines.append(f"  warning {name}: {count}")
    return "\n".join(lines)
