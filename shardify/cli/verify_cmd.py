"""``shardify verify URL``: recompute checksums and counts, decode every member."""

from __future__ import annotations

import argparse

from shardify.cli.inspect_cmd import add_location_args, location_from
from shardify.drift import input_changes
from shardify.manifest import read_manifest
from shardify.storage import Location
from shardify.verify import verify_output


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("verify", help="full check of a built output; exit 1 on any mismatch")
    add_location_args(parser)
    parser.add_argument("--input", nargs="?", const="", default=None, metavar="ROOT",
                        help="also report what changed in the input (the JSONL files and every "
                             "media file) since the build; ROOT defaults to the build's input")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = location_from(args)
    report = verify_output(output)
    for problem in report.problems:
        print(f"MISMATCH {problem}")
    changed: list[str] = []
    if args.input is not None:
        root = args.input or str(read_manifest(output).config.get("input", ""))
        changed = input_changes(output, read_manifest(output), Location(root, output.storage_options))
        for change in changed:
            print(f"CHANGED {change}")
    problems = len(report.problems) + len(changed)
    status = "OK" if not problems else f"FAILED ({problems} problem(s))"
    print(f"{status}: {report.shards} shards, {report.samples} samples, "
          f"{report.members} members checked in {output.display('')}"
          + ("; input compared" if args.input is not None else ""))  # fmt: skip
    return 0 if not problems else 1


