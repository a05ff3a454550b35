"""The build driver: config -> plan -> executor runs build_shard -> rejects -> manifest.

The driver holds only the plan (a few numbers per shard) and each shard's small result;
media bytes never pass through it. Resuming is free: a shard whose tar and result record
exist is not redone.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import IO, Any, Iterator, Optional, Union

from shardify.build import build_shard
from shardify.config import Config, describe_changes, settings_fingerprint
from shardify.errors import AccessError, BuildError, ConfigError, OutputMismatchError
from shardify.executors import make_executor
from shardify.inputs import Change, InputHasher, classify, digest_input, first_change
from shardify.layout import (
    BUILD_STATE_NAME,
    DONE_DIR,
    MANIFEST_NAME,
    REJECTS_NAME,
    STATE_DIR,
    is_ours,
    is_shard_name,
    is_temp_name,
    line_digests_name,
    result_name,
)
from shardify.lock import OutputLock
from shardify.manifest import (
    BuildState,
    InputRecord,
    Manifest,
    ShardResult,
    SplitInfo,
    has_manifest,
    load_result,
    read_build_state,
    read_manifest,
    write_build_state,
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


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildReport:
    """What a build or validate run did."""

    manifest: Manifest
    elapsed_s: float
    executor: str
    resumed_shards: int = 0
    already_complete: bool = False
    appended_lines: int = 0
    """Lines added to the input since the build this one extended (an incremental build)."""


def build(config: Config, *, overwrite: bool = False, progress: Optional[IO[str]] = None) -> BuildReport:
    """Build the shards, rejects.jsonl and manifest.json that ``config`` describes."""
    return _run(config, write=True, overwrite=overwrite, progress=progress)


def validate(config: Config, *, progress: Optional[IO[str]] = None) -> BuildReport:
    """Check every sample and write rejects.jsonl only (no shards, no manifest)."""
    return _run(config, write=False, overwrite=False, progress=progress)


@dataclass(frozen=True, slots=True)
class _Job:
    """What every stage of one run shares."""

    config: Config
    source: Location
    output: Location
    splits: list[str]
    settings: dict[str, Any]
    write: bool
    started: float


def _run(config: Config, *, write: bool, overwrite: bool, progress: Optional[IO[str]]) -> BuildReport:
    started = time.monotonic()
    # Tasks get absolute locations: workers (Ray, another CWD) resolve nothing relative.
    config = config.model_copy(update={"input": normalise_location(config.input),
                                       "output": normalise_location(config.output)})  # fmt: skip
    source = Location(config.input, config.storage_options)
    output = Location(config.output, config.storage_options)
    check_locations(source, output)
    job = _Job(config, source, output, resolve_splits(config, source), config.output_settings(),
               write, started)  # fmt: skip
    if not write:
        check_validate_output(output)
        return _execute(job, recorded=None, progress=progress)
    with OutputLock(output):
        recorded = prepare_output(output, job.settings, overwrite=overwrite)
        if recorded is not None:
            changes = compare_inputs(source, output, job.splits, recorded)
            if has_manifest(output) and all(c is Change.SAME for c in changes.values()):
                return BuildReport(manifest=read_manifest(output), elapsed_s=time.monotonic() - started,
                                   executor="nothing to do", already_complete=True)  # fmt: skip
        # From here the output is a build in progress: its manifest no longer tells the truth.
        write_build_state(output, BuildState(config_sha256=settings_fingerprint(job.settings),
                                             config=job.settings, inputs=recorded))  # fmt: skip
        output.delete(MANIFEST_NAME)
        return _execute(job, recorded=recorded, progress=progress)


def _execute(job: _Job, *, recorded: Optional[dict[str, InputRecord]], progress: Optional[IO[str]]) -> BuildReport:
    output = job.output
    plans, inputs = plan_inputs(job)
    if job.write:
        write_build_state(output, BuildState(config_sha256=settings_fingerprint(job.settings),
                                             config=job.settings, inputs=inputs))  # fmt: skip
    tasks = [task for split in job.splits for task in plans[split]]
    # With write=True the reject records live in the saved done files, not in memory.
    # Bytes of each split's JSONL known equal to what the done records were built from: all
    # of an unchanged file, the old length of an appended one (a byte prefix), else none.
    unchanged = {s: recorded[s].bytes for s in job.splits if s in recorded} if recorded else {}
    results = {t.name: r.without_details() for t in tasks
               if job.write and (r := _finished(output, t, unchanged))}  # fmt: skip
    bar = Progress(total_shards=len(tasks), total_lines=sum(t.end_line - t.first_line for t in tasks),
                   stream=progress)  # fmt: skip
    for result in results.values():
        bar.update(result)
    pending = [t for t in tasks if t.name not in results]
    run = functools.partial(build_shard, config=job.config, write=job.write)
    described = "nothing to do"
    if pending:
        with make_executor(job.config.executor) as executor:
            described = executor.describe()
            for result in executor.map_unordered(run, pending):
                results[result.shard.name] = result.without_details() if job.write else result
                bar.update(result)
    bar.finish()
    manifest = _finish(job, plans, results, inputs)
    appended = sum(inputs[s].lines - recorded[s].lines for s in job.splits if s in recorded) if recorded else 0
    return BuildReport(manifest=manifest, elapsed_s=time.monotonic() - job.started,
                       executor=described, resumed_shards=len(tasks) - len(pending),
                       appended_lines=appended)  # fmt: skip


def _finish(
    job: _Job,
    plans: dict[str, list[ShardTask]],
    results: dict[str, ShardResult],
    inputs: dict[str, InputRecord],
) -> Manifest:
    output = job.output
    splits = {
        split: SplitInfo.from_shards(f"{split}.jsonl", inputs.get(split),
                                     [results[t.name].shard for t in plans[split]])
        for split in job.splits
    }  # fmt: skip
    output.makedirs()
    write_rejects(output, _iter_rejects(job, plans, results))
    check_reject_budget(splits, job.config.validation.max_reject_fraction, output.display(REJECTS_NAME))
    if not job.write:
        splits = {name: replace(info, shards=()) for name, info in splits.items()}
    manifest = Manifest(config=job.settings, splits=splits)
    if job.write:
        _remove_unplanned_shards(output, {t.name for ts in plans.values() for t in ts})
        _remove_temp_files(output)  # a task killed mid-write (then retried) leaves one
        write_manifest(output, manifest)
        output.delete(BUILD_STATE_NAME)
    return manifest


def check_reject_budget(splits: dict[str, SplitInfo], budget: Optional[float], where: str) -> None:
    """BuildError (exit 1, after rejects.jsonl is written) when more than ``budget`` of a
    split's non-blank lines were rejected: likely a wrong root or a broken dataset."""
    if budget is None:
        return
    for split, info in splits.items():
        candidates = info.lines - info.blank
        if candidates and info.rejected / candidates > budget:
            top = sorted(info.rejects_by_reason.items(), key=lambda kv: -kv[1])[:3]
            reasons = ", ".join(f"{reason} {count}" for reason, count in top)
            raise BuildError(
                f"{split}: {info.rejected} of {candidates} lines rejected "
                f"({info.rejected / candidates:.1%}), above validation.max_reject_fraction="
                f"{budget:g} (top reasons: {reasons}); see {where}, fix the data or raise the budget"
            )


def _iter_rejects(job: _Job, plans: dict[str, list[ShardTask]], results: dict[str, ShardResult]) -> Iterator[RejectRecord]:
    """Every reject in input order, streamed from the saved done files when building."""
    for split in job.splits:
        for task in plans[split]:
            result = results[task.name]
            if job.write and result.shard.rejected:
                saved = load_result(job.output, task.name)
                if saved is None:
                    raise BuildError(
                        f"{job.output.display(result_name(task.name))} vanished before the build "
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


def plan_inputs(job: _Job) -> tuple[dict[str, list[ShardTask]], dict[str, InputRecord]]:
    """Every split's shard tasks and input record, from one streaming pass per split.

    When building, each line's digest is committed to ``_shardify/lines/<split>.bin`` so a
    later rerun can name the first line an edit changed.
    """
    plans: dict[str, list[ShardTask]] = {}
    inputs: dict[str, InputRecord] = {}
    for split in job.splits:
        name = line_digests_name(split)
        staging = job.output.staging_path(name) if job.write else None
        try:
            with open(staging or os.devnull, "wb") as lines_out:
                hasher = InputHasher(f"{split}.jsonl", lines_out=lines_out if staging else None)
                plans[split] = list(plan_split(job.source, split, job.config, hasher=hasher))
                inputs[split] = hasher.record()
            if staging:
                job.output.put_file(staging, name)
        finally:
            if staging and os.path.exists(staging):
                os.unlink(staging)
    return plans, inputs


def plan_split(source: Location, split: str, config: Config, *,
               hasher: Optional[InputHasher] = None) -> Iterator[ShardTask]:  # fmt: skip
    """Stream the split's JSONL once and cut it into shard tasks; ``hasher`` sees every line."""
    file = f"{split}.jsonl"
    target = config.shard.target_bytes

    def lines() -> Iterator[LineInfo]:
        for index, (offset, raw) in enumerate(source.iter_lines(file)):
            weight: Optional[int] = None
            if hasher is not None:
                hasher.feed(raw)
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


def _finished(output: Location, task: ShardTask, unchanged: dict[str, int]) -> Optional[ShardResult]:
    """The saved result of ``task`` when its shard is done from the very same input bytes:
    the same line and byte range, inside the part of the file known unchanged since."""
    result = load_result(output, task.name)
    if result is None or not _same_input(result, task) or task.end_byte > unchanged.get(task.split, -1):
        return None
    try:  # one stat: a missing tar raises, a partial one has the wrong size
        complete = output.size(task.name) == result.shard.bytes
    except FileNotFoundError:
        return None
    return result if complete else None


def _same_input(result: ShardResult, task: ShardTask) -> bool:
    shard = result.shard
    return (shard.name, shard.first_line, shard.end_line, shard.start_byte, shard.end_byte) == (
        task.name, task.first_line, task.end_line, task.start_byte, task.end_byte) and bool(shard.input_sha256)


def prepare_output(output: Location, settings: dict[str, Any], *, overwrite: bool) -> Optional[dict[str, InputRecord]]:
    """Make the output ready to (re)build; the inputs its earlier build recorded, if any.

    Refuses (OutputMismatchError, exit 2) an output built with another config, or holding
    shardify files but no build state, unless ``overwrite``; with it, clears the output.
    """
    fingerprint = settings_fingerprint(settings)
    previous: Optional[Union[Manifest, BuildState]] = None
    if has_manifest(output):
        previous, what = read_manifest(output), "a finished build"
    else:
        previous, what = read_build_state(output), "an unfinished build"
    if previous is not None and previous.config_sha256 != fingerprint and not overwrite:
        raise OutputMismatchError(
            f"{output.display('')} holds {what} made with a different config"
            f"{_changes(previous.config, settings)}; rerun with --overwrite to start over, "
            "or choose another output"
        )
    # A lone rejects.jsonl is a `shardify validate` report: the build replaces it.
    leftovers = [n for n in output.list_names() if is_ours(n) and n not in (REJECTS_NAME, STATE_DIR)]
    if previous is None and leftovers and not overwrite:
        raise OutputMismatchError(
            f"{output.display('')} already holds {leftovers[0]} but no shardify build "
            "state; rerun with --overwrite to replace it, or choose another output"
        )
    if overwrite:
        clear_output(output)
        return None
    _remove_temp_files(output)
    if isinstance(previous, Manifest):
        return _recorded_inputs(output, previous)
    return previous.inputs if previous is not None else None


def _recorded_inputs(output: Location, manifest: Manifest) -> dict[str, InputRecord]:
    missing = [name for name, record in manifest.inputs.items() if record is None]
    if missing:
        raise OutputMismatchError(
            f"{output.display('')} holds a build by shardify {manifest.shardify_version}, which "
            "did not record its input, so a rerun cannot tell what changed; rerun with "
            "--overwrite to rebuild it"
        )
    return {name: record for name, record in manifest.inputs.items() if record is not None}


def compare_inputs(source: Location, output: Location, splits: list[str],
                   recorded: dict[str, InputRecord]) -> dict[str, Change]:  # fmt: skip
    """How each split's JSONL relates to what the earlier build read; refuses (exit 2,
    naming the split and its first changed line) anything but unchanged or appended."""
    changes: dict[str, Change] = {}
    for split in sorted(set(recorded) - set(splits)):
        raise OutputMismatchError(
            f"{split}: {recorded[split].file} was part of the build in {output.display('')} and is "
            "no longer built; rerun with --overwrite to rebuild without it"
        )
    for split in splits:
        old = recorded.get(split)
        if old is None:  # a split new since the build (e.g. test.jsonl added): all appended
            changes[split] = Change.APPENDED
            continue
        new, prefix = digest_input(source, old.file, prefix_at=old.bytes)
        changes[split] = classify(old, new, prefix)
        if changes[split] is Change.CHANGED:
            raise _input_changed(source, output, split, old)
    return changes


def _input_changed(source: Location, output: Location, split: str, old: InputRecord) -> OutputMismatchError:
    try:
        digests: Optional[bytes] = output.read_bytes(line_digests_name(split))
    except FileNotFoundError:
        digests = None
    change = first_change(source, old.file, old, digests)
    where = f"{source.display(old.file)}:{change.line}" if change.line else source.display(old.file)
    return OutputMismatchError(
        f"{where}: {split} changed since the build in {output.display('')}: {change.what}; "
        "only appending lines to a built input keeps its shards. Rerun with --overwrite to "
        "rebuild from the new input, or restore the input"
    )


def check_validate_output(output: Location) -> None:
    """``validate`` writes rejects.jsonl: never over the report of a build."""
    if has_manifest(output) or output.exists(BUILD_STATE_NAME) or output.exists(DONE_DIR):
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
    """Remove everything a shardify build writes (and nothing else) but the running lease."""
    for name in output.list_names():
        if is_ours(name) and name != STATE_DIR:
            output.delete(name)
    state = output.child(STATE_DIR)
    for name in state.list_names():
        if name != "locks":
            state.delete(name)
    _remove_temp_files(output)


def _remove_temp_files(output: Location) -> None:
    for name in output.list_names("."):
        if is_temp_name(name):
            output.delete(name)


def _remove_unplanned_shards(output: Location, planned: set[str]) -> None:
    for name in output.list_names():
        if is_shard_name(name) and name not in planned:
            output.delete(name)
    done = output.child(DONE_DIR)
    for name in done.list_names():
        if name.removesuffix(".json") not in planned:
            done.delete(name)
