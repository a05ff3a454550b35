"""Every name shardify writes below an output root, and nothing else.

::

    manifest.json                 written last; its presence means the build is complete
    rejects.jsonl                 one line per rejected input line
    warnings.jsonl                one line per warning (a sample kept, with a caveat)
    train-000000.tar ...          the shards, sequential, input order
    _shardify/build.json          the running build's config and input (removed when complete)
    _shardify/done/<shard>.json   one result per finished shard (kept: a rerun reuses them)
    _shardify/lines/<split>.bin   8 bytes per input line: tells which line an edit changed
    _shardify/locks/<token>.json  the lease of the build that is running
    .<name>.tmp-<pid>-<id>        a file being written (renamed into place when complete)

Pure string functions: no I/O, no imports from the rest of shardify.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
WARNINGS_NAME = "warnings.jsonl"
STATE_DIR = "_shardify"
BUILD_STATE_NAME = f"{STATE_DIR}/build.json"
DONE_DIR = f"{STATE_DIR}/done"
LOCK_DIR = f"{STATE_DIR}/locks"
SHARD_DIGITS = 6
SHARD_FILE = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
TEMP_MARK = ".tmp-"


def shard_name(split: str, index: int) -> str:
    """The file name of shard ``index`` of ``split``: ``train-000042.tar``."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return f"{split}-{index:0{SHARD_DIGITS}d}.tar"


def is_shard_name(name: str) -> bool:
    return bool(SHARD_FILE.match(name))


def result_name(shard: str) -> str:
    """Where a finished shard's result record lives."""
    return f"{DONE_DIR}/{shard}.json"


def line_digests_name(split: str) -> str:
    """Where the per-line digests of a split's input are kept."""
    return f"{STATE_DIR}/lines/{split}.bin"


def lock_name(token: str) -> str:
    return f"{LOCK_DIR}/{token}.json"


def temp_name(name: str) -> str:
    """A hidden sibling of ``name`` to write into before an atomic rename."""
    head, tail = posixpath.split(name)
    return posixpath.join(head, f".{tail}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp_name(name: str) -> bool:
    return TEMP_MARK in name


def is_ours(name: str) -> bool:
    """A top-level name that a shardify build writes (``--overwrite`` removes exactly these)."""
    return name in (MANIFEST_NAME, REJECTS_NAME, WARNINGS_NAME, STATE_DIR) or is_shard_name(name)
