"""Start-of-run checks: the input and output exist, can be used, and do not overlap; the
splits to build. Each failure is one line naming the config key (exit 2)."""

from __future__ import annotations

import os
from typing import Optional

from shardify.config import Config
from shardify.errors import AccessError, ConfigError
from shardify.storage import Location


def check_locations(source: Location, output: Optional[Location]) -> None:
    """Fail at the start, with the config key in the message, when input or output is unusable."""
    relative = " (relative paths are resolved from the current directory)"
    checks = [("input", source, source.check_readable)]
    if output is not None:
        checks.append(("output", output, output.check_writable))
    for key, location, check in checks:
        try:
            check()
        except AccessError as exc:
            hint = relative if location.is_local else ""
            raise AccessError(f"{key}: {exc}{hint}") from None
    if source.isfile(""):
        raise ConfigError(
            f"input: {source.display('')} is a file; give the dataset root that holds train.jsonl"
        )
    if output is not None:
        check_output_place(source, output)


def check_output_place(source: Location, output: Location) -> None:
    """ConfigError (exit 2, one line naming ``output``) when the output cannot hold a build:
    a file, a folder that cannot be created, the input root itself or a folder inside it
    (shards would land among the media), or a folder that contains the input."""
    if output.is_local:
        _check_local_output(output)
    src, out = _comparable(source), _comparable(output)
    if src is None or out is None:
        return
    if out == src or out.startswith(src.rstrip("/") + "/"):
        where = "is the input root" if out == src else f"is inside the input root {source.display('')}"
        raise ConfigError(f"output: {output.display('')} {where}; write the shards to a folder "
                          "outside the dataset, e.g. next to it")  # fmt: skip
    if src.startswith(out.rstrip("/") + "/"):
        raise ConfigError(f"output: {output.display('')} contains the input root "
                          f"{source.display('')}; a rebuild would delete files below it, choose "
                          "another folder")  # fmt: skip


def _comparable(location: Location) -> Optional[str]:
    """A form of the location in which "inside" is a string prefix (local: the real path)."""
    if location.is_local:
        return os.path.realpath(location.root)
    return location.url


def _check_local_output(output: Location) -> None:
    path = output.root
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"output: {output.display('')} is a file, not a folder; give a folder "
                          "for the shards (it is created when missing)")  # fmt: skip
    missing = []
    head = path
    while head and not os.path.exists(head):
        missing.append(head)
        head = os.path.dirname(head)
    try:  # creating it is the only honest test (/proc, read-only mounts, ENOTDIR on the way)
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output: cannot create {output.display('')}: {exc.strerror or exc}; "
                          "choose a folder you can write to") from None  # fmt: skip
    for created in missing:  # nothing is written before the build really starts
        try:
            os.rmdir(created)
        except OSError:
            break  # another build (or process) put something there meanwhile: leave it


def resolve_splits(config: Config, source: Location) -> list[str]:
    """The splits to build: as configured, else train (+ test when test.jsonl exists)."""
    splits = list(config.splits) if config.splits else ["train"]
    if config.splits is None and source.isfile("test.jsonl"):
        splits.append("test")
    for split in splits:
        if not source.isfile(f"{split}.jsonl"):
            key = "input" if split == "train" and config.splits is None else "splits"
            raise ConfigError(
                f"{key}: {source.display(split + '.jsonl')} not found; a dataset root needs "
                f"one JSONL file per split (train.jsonl, optional test.jsonl)"
            )
    return splits
