"""The build driver: config -> plan -> executor runs build_shard -> rejects -> manifest.

The driver holds only the plan (a few numbers per shard) and each shard's small result;
media bytes never pass through it. Resuming is free: a shard whose tar and result record
exist is not redone.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import IO, Any, Iterator, Optional

import orjson

from shardify.build import build_shard
from shardify.config import Config, describe_changes, settings_fingerprint
from shardify.errors import AccessError, BuildError, ConfigError, OutputMismatchError
from shardify.executors import make_executor
from shardify.manifest import (
    BUILD_STATE_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    STATE_DIR,
    ShardResult,
    has_manifest,
    load_result,
    make_manifest,
    read_manifest,
    result_name,
    split_summary,
    write_manifest,
    write_rejects,
)
from shardify.planning import LineInfo, ShardTask, plan_shards
from shardify.progress import Progress
from shardify.schema import RejectRecord, SampleRecord, is_blank, parse_line
from shardify.storage import Location, normalise_location
from shardify.tarwriter import member_bytes

log = logging.getLogger(__name__)
LINES_PER_SAMPLE_SLOT = 100
"""A shard covers at most 100 x max_samples lines, so mostly-rejected input still comes in
bounded tasks (each task holds its rejects until it finishes)."""
_SOURCE_FIELD_BYTES = 80  # the "source" object build_shard adds to each json
_SHARD_FILE = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildReport:
    """What a build or validate run did."""

    manifest: dict[str, Any]
    elapsed_s: float
    executor: str
    resumed_shards: int = 0
    already_complete: bool = False


def build(config: Config, *, overwrite: bool = False, progress: Optional[IO[str]] = None) -> BuildReport:
    """Build the shards, rejects.jsonl and manifest.json that ``config`` describes."""
    return _run(config, write=True, overwrite=overwrite, progress=progress)


def validate(config: Config, *, progress: Optional[IO[str]] = None) -> BuildReport:
    """Check every sample and write rejects.jsonl only (no shards, no manifest)."""
    return _run(config, write=False, overwrite=False, progress=progress)


def _run(config: Config, *, write: bool, overwrite: bool, progress: Optional[IO[str]]) -> BuildReport:
    started = time.monotonic()
    # Tasks get absolute locations: workers (Ray, another CWD) resolve nothing relative.
    config = config.model_copy(update={"input": normalise_location(config.input),
                                       "output": normalise_location(config.output)})  # fmt: skip
    source = Location(config.input, config.storage_options)
    output = Location(config.output, config.storage_options)
    check_locations(source, output)
    splits = resolve_splits(config, source)
    settings = config.output_settings()
    if not write:
        check_validate_output(output)
    if write and prepare_output(output, settings, overwrite=overwrite):
        manifest = read_manifest(output)
        return BuildReport(manifest=manifest, elapsed_s=time.monotonic() - started,
                           executor="nothing to do", already_complete=True)  # fmt: skip
    plans = {split: list(plan_split(source, split, config)) for split in splits}
    tasks = [task for split in splits for task in plans[split]]
    # With write=True the reject records live in the saved result files, not in memory.
    results = {t.name: r.without_rejects() for t in tasks if write and (r := _finished(output, t))}
    bar = Progress(total_shards=len(tasks), total_lines=sum(t.end_line - t.first_line for t in tasks),
                   stream=progress)  # fmt: skip
    for result in results.values():
        bar.update(result)
    pending = [t for t in tasks if t.name not in results]
    run = functools.partial(build_shard, config=config, write=write)
    described = "nothing to do"
    if pending:
        with make_executor(config.executor) as executor:
            described = executor.describe()
            for result in executor.map_unordered(run, pending):
                results[result.shard.name] = result.without_rejects() if write else result
                bar.update(result)
    bar.finish()
    manifest = _finish(output, splits, plans, results, settings, write=write,
                       reject_budget=config.validation.max_reject_fraction)  # fmt: skip
    return BuildReport(manifest=manifest, elapsed_s=time.monotonic() - started,
                       executor=described, resumed_shards=len(tasks) - len(pending))  # fmt: skip


def _finish(
    output: Location,
    splits: list[str],
    plans: dict[str, list[ShardTask]],
    results: dict[str, ShardResult],
    settings: dict[str, Any],
    *,
    write: bool,
    reject_budget: Optional[float] = None,
) -> dict[str, Any]:
    ordered = {split: [results[t.name] for t in plans[split]] for split in splits}
    summaries = {split: split_summary(f"{split}.jsonl", ordered[split]) for split in splits}
    if not write:
        for info in summaries.values():
            info["shards"] = []
    output.makedirs()
    write_rejects(output, _iter_rejects(output, splits, plans, results, write=write))
    check_reject_budget(summaries, reject_budget, output.display(REJECTS_NAME))
    manifest = make_manifest(settings, summaries)
    if write:
        _remove_unplanned_shards(output, {t.name for ts in plans.values() for t in ts})
        _remove_temp_files(output)  # a task killed mid-write (then retried) leaves one
        write_manifest(output, manifest)
        output.delete(STATE_DIR)
    return manifest


def check_reject_budget(summaries: dict[str, dict[str, Any]], budget: Optional[float], where: str) -> None:
    """BuildError (exit 1, after rejects.jsonl is written) when more than ``budget`` of a
    split's non-blank lines were rejected: likely a wrong root or a broken dataset."""
    if budget is None:
        return
    for split, info in summaries.items():
        candidates = info["lines"] - info["blank"]
        if candidates and info["rejected"] / candidates > budget:
            top = sorted(info["rejects_by_reason"].items(), key=lambda kv: -kv[1])[:3]
            reasons = ", ".join(f"{reason} {count}" for reason, count in top)
            raise BuildError(
                f"{split}: {info['rejected']} of {candidates} lines rejected "
                f"({info['rejected'] / candidates:.1%}), above validation.max_reject_fraction="
                f"{budget:g} (top reasons: {reasons}); see {where}, fix the data or raise the budget"
            )


def _iter_rejects(
    output: Location,
    splits: list[str],
    plans: dict[str, list[ShardTask]],
    results: dict[str, ShardResult],
    *,
    write: bool,
) -> Iterator[RejectRecord]:
    """Every reject in input order, streamed from the saved result files when building."""
    for split in splits:
        for task in plans[split]:
            result = results[task.name]
            if write and result.reject_reasons:
                saved = load_result(output, task.name)
                if saved is None:
                    raise BuildError(
                        f"{output.display(result_name(task.name))} vanished before the build "
                        "finished; rerun the build"
                    )
                result = saved
            yield from result.rejects


def check_locations(source: Location, output: Location) -> None:
    """Fail at the start, with the config key in the message, when input or output is unusable."""
    relative = " (relative paths are resolved from the current directory)"
    for key, location, check in (("input", source, source.check_readable),
                                 ("output", output, output.check_writable)):  # fmt: skip
        try:
            check()
        except AccessError as exc:
            hint = relative if location.is_local else ""
            raise AccessError(f"{key}: {exc}{hint}") from None
    if source.isfile(""):
        raise ConfigError(
            f"input: {source.display('')} is a file; give the dataset root that holds train.jsonl"
        )
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
        os.rmdir(created)


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


def plan_split(source: Location, split: str, config: Config) -> Iterator[ShardTask]:
    """Stream the split's JSONL once and cut it into shard tasks."""
    file = f"{split}.jsonl"
    target = config.shard.target_bytes

    def lines() -> Iterator[LineInfo]:
        for index, (offset, raw) in enumerate(source.iter_lines(file)):
            weight: Optional[int] = None
            if not is_blank(raw):
                parsed = parse_line(raw, split=split, file=file, index=index,
                                    max_num_frames=config.video.max_num_frames)  # fmt: skip
                if isinstance(parsed, SampleRecord):
                    weight = _estimated_bytes(source, parsed, len(raw)) if target else 1
            yield LineInfo(index=index, offset=offset, length=len(raw), weight=weight)

    return plan_shards(lines(), split=split, file=file, max_samples=config.shard.max_samples,
                       target_bytes=target,
                       max_lines=LINES_PER_SAMPLE_SLOT * config.shard.max_samples)  # fmt: skip


def _estimated_bytes(source: Location, record: SampleRecord, line_bytes: int) -> int:
    """A sample's size in a shard, estimated from its line and its media files' sizes.

    A video counts as its file size (its JPEG frames are not known before extraction).
    """
    total = member_bytes(line_bytes + _SOURCE_FIELD_BYTES)
    for path in record.media:
        try:
            total += member_bytes(source.size(path))
        except (FileNotFoundError, OSError):
            pass  # the shard task reports it as missing_file
    return total


def _finished(output: Location, task: ShardTask) -> Optional[ShardResult]:
    result = load_result(output, task.name)
    if result is None or result.shard.name != task.name:
        return None
    try:  # one stat: a missing tar raises, a partial one has the wrong size
        complete = output.size(task.name) == result.shard.bytes
    except FileNotFoundError:
        return None
    return result if complete else None


def prepare_output(output: Location, settings: dict[str, Any], *, overwrite: bool) -> bool:
    """Make the output ready to (re)build; True when it already holds this exact build."""
    fingerprint = settings_fingerprint(settings)
    previous: Optional[dict[str, Any]] = None
    if has_manifest(output):
        previous = read_manifest(output)
        if previous.get("config_sha256") == fingerprint and not overwrite:
            return True
        what = "a finished build"
    elif output.exists(BUILD_STATE_NAME):
        previous = orjson.loads(output.read_bytes(BUILD_STATE_NAME))
        what = "an unfinished build"
    if previous is not None and previous.get("config_sha256") != fingerprint and not overwrite:
        raise OutputMismatchError(
            f"{output.display('')} holds {what} made with a different config"
            f"{_changes(previous.get('config'), settings)}; rerun with --overwrite to start over, "
            "or choose another output"
        )
    # A lone rejects.jsonl is a `shardify validate` report: the build replaces it.
    leftovers = [n for n in output.list_names() if _is_ours(n) and n != REJECTS_NAME]
    if previous is None and leftovers and not overwrite:
        raise OutputMismatchError(
            f"{output.display('')} already holds {leftovers[0]} but no shardify build "
            "state; rerun with --overwrite to replace it, or choose another output"
        )
    if overwrite or (previous is not None and previous.get("config_sha256") != fingerprint):
        clear_output(output)
    _remove_temp_files(output)
    output.write_bytes(BUILD_STATE_NAME, orjson.dumps({"config_sha256": fingerprint, "config": settings}))
    return False


def check_validate_output(output: Location) -> None:
    """``validate`` writes rejects.jsonl: never over the report of a build."""
    if has_manifest(output) or output.exists(BUILD_STATE_NAME):
        raise OutputMismatchError(
            f"{output.display('')} holds a shardify build; validate would replace its "
            "rejects.jsonl. Validate into another output, e.g. --set output=validate-report"
        )


def _changes(before: Any, after: dict[str, Any]) -> str:
    if not isinstance(before, dict):
        return ""
    changes = describe_changes(before, after)
    shown = "; ".join(changes[:3]) + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else "")
    return f" ({shown})" if shown else ""


def clear_output(output: Location) -> None:
    """Remove everything a shardify build writes (and nothing else)."""
    for name in output.list_names():
        if _is_ours(name):
            output.delete(name)
    _remove_temp_files(output)


def _is_ours(name: str) -> bool:
    return name in (MANIFEST_NAME, REJECTS_NAME, STATE_DIR) or bool(_SHARD_FILE.match(name))


def _remove_temp_files(output: Location) -> None:
    for name in output.list_names("."):
        if ".tmp-" in name:
            output.delete(name)


def _remove_unplanned_shards(output: Location, planned: set[str]) -> None:
    for name in output.list_names():
        if _SHARD_FILE.match(name) and name not in planned:
            output.delete(name)
