"""``shardify verify URL``: recompute checksums and counts, decode every member."""

from __future__ import annotations

import argparse

from shardify.cli.inspect_cmd import add_location_args, location_from
from shardify.verify import verify_output


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("verify", help="full check of a built output; exit 1 on any mismatch")
    add_location_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = location_from(args)
    report = verify_output(output)
    for problem in report.problems:
        print(f"MISMATCH {problem}")
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    print(f"{status}: {report.shards} shards, {report.samples} samples, "
          f"{report.members} members checked in {output.display('')}")  # fmt: skip
    return 0 if report.ok else 1


