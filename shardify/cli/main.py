"""Entry point of the ``shardify`` command: parse, dispatch, map errors to exit codes.

Exit codes: 0 done (rejects are reported, not fatal); 1 the build or check failed;
2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from shardify import __version__
from shardify.cli import build_cmd, head_cmd, inspect_cmd, validate_cmd, verify_cmd
from shardify.errors import ShardifyError
from shardify.interrupts import (
    INTERRUPTED_LINE,
    exit_code,
    ignore_late_signals,
    install_for_command,
)

COMMANDS = (build_cmd, validate_cmd, inspect_cmd, head_cmd, verify_cmd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"shardify: error: {message}\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shardify", description="Aria-format chat datasets -> WebDataset shards.")
    parser.add_argument("--version", action="version", version=f"shardify {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        install_for_command()  # inside the try: a signal right after it is still caught below
        code = int(args.run(args))
        ignore_late_signals()  # the work is done and written: a late signal must not change the exit
        return code
    except ShardifyError as exc:
        ignore_late_signals()
        print(f"shardify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM via shardify.interrupts
        ignore_late_signals()  # Ray's exit hooks signal their processes: the exit code must stay ours
        print(INTERRUPTED_LINE, file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
