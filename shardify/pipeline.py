"""The build driver: config -> checks -> plan (streamed) -> executor runs build_shard ->
rejects -> manifest.

The driver holds only the plan (a few numbers per shard) and each shard's small result;
media bytes never pass through it. Planning runs in a background thread and hands each
task to the executor as soon as it is planned. Resuming is free: a shard whose tar and
done record exist, built from the same input bytes, is not redone (:mod:`shardify.reruns`
says what a rerun does when the input changed).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO, Any, Iterable, Iterator, Optional

from shardify.build import build_shard
from shardify.config import Config, settings_fingerprint
from shardify.errors import BuildError, ConfigError
from shardify.executors import make_executor
from shardify.inputs import Change
from shardify.interrupts import block_in_this_thread
from shardify.layout import BUILD_STATE_NAME, DONE_DIR, MANIFEST_NAME, REJECTS_NAME, result_name
from shardify.lock import OutputLock
from shardify.manifest import (
    BuildState,
    InputRecord,
    Manifest,
    ShardResult,
    SplitInfo,
    has_manifest,
    load_result,
    read_manifest,
    write_build_state,
    write_manifest,
    write_trails,
)
from shardify.places import check_locations, resolve_splits
from shardify.planner import PlanStream
from shardify.planning import ShardTask
from shardify.progress import Progress
from shardify.reruns import (
    can_hold_validate_report,
    prepare_output,
    read_inputs,
    remove_temp_files,
    remove_unplanned_shards,
)
from shardify.schema import RejectRecord
from shardify.storage import Location, normalise_location

log = logging.getLogger(__name__)
RECORD_READS = 32
"""Done records read at once when a rerun looks for finished shards (one GET each)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildReport:
    """What a build or validate run did."""

    manifest: Manifest
    elapsed_s: float
    rejects: tuple[RejectRecord, ...] = ()
    """``validate`` only: every reject, in input order."""
    written: bool = True
    """``validate`` only: whether rejects.jsonl / warnings.jsonl were written to the output."""
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
    output: Optional[Location]
    """None for a ``validate`` that writes no report (no output set, or one holding a build)."""
    splits: list[str]
    settings: dict[str, Any]
    write: bool
    started: float


def _run(config: Config, *, write: bool, overwrite: bool, progress: Optional[IO[str]]) -> BuildReport:
    started = time.monotonic()
    if config.output is None and write:
        raise ConfigError("output: missing required key 'output' (the folder or s3:// prefix for "
                          "the shards); `shardify validate` runs without it")  # fmt: skip
    # Tasks get absolute locations: workers (Ray, another CWD) resolve nothing relative.
    config = config.model_copy(update={
        "input": normalise_location(config.input),
        "output": normalise_location(config.output) if config.output is not None else None})  # fmt: skip
    source = Location(config.input, config.storage_options)
    output = Location(config.output, config.storage_options) if config.output is not None else None
    check_locations(source, output)
    job = _Job(config, source, output, resolve_splits(config, source), config.output_settings(),
               write, started)  # fmt: skip
    if output is None or not write:
        if output is not None and not can_hold_validate_report(output):
            job = replace(job, output=None)
        inputs, _ = read_inputs(source, job.output, job.splits, None)
        return _execute(job, inputs=inputs, recorded=None, progress=progress)
    with OutputLock(output):
        recorded = prepare_output(output, job.settings, overwrite=overwrite)
        inputs, changes = read_inputs(source, output, job.splits, recorded)
        if recorded is not None and has_manifest(output) and all(c is Change.SAME for c in changes.values()):
            return BuildReport(manifest=read_manifest(output), elapsed_s=time.monotonic() - started,
                               executor="nothing to do", already_complete=True)  # fmt: skip
        # From here the output is a build in progress: its manifest no longer tells the truth.
        write_build_state(output, BuildState(config_sha256=settings_fingerprint(job.settings),
                                             config=job.settings, inputs=inputs))  # fmt: skip
        output.delete(MANIFEST_NAME)
        return _execute(job, inputs=inputs, recorded=recorded, progress=progress)


def _execute(job: _Job, *, inputs: dict[str, InputRecord], recorded: Optional[dict[str, InputRecord]],
             progress: Optional[IO[str]]) -> BuildReport:  # fmt: skip
    # Bytes of each split's JSONL known equal to what the done records were built from: all
    # of an unchanged file, the old length of an appended one (a byte prefix), else none.
    unchanged = {s: recorded[s].bytes for s in job.splits if s in recorded} if recorded else {}
    bar = Progress(total_shards=0, total_lines=sum(i.lines for i in inputs.values()), stream=progress)
    stream = PlanStream(job.source, job.splits, job.config, output=job.output if job.write else None)
    output = job.output
    results: dict[str, ShardResult] = {}
    run = functools.partial(build_shard, config=job.config, write=job.write)
    described = "nothing to do"
    try:
        todo = _pending(job, stream, unchanged, results, bar)
        bar.set_phase(f"planning {bar.total_lines:,} lines")
        first = next(todo, None)
        if first is not None:
            if job.config.executor.kind == "ray":
                bar.set_phase("starting Ray" if job.config.executor.address is None else "joining Ray")
            with make_executor(job.config.executor) as executor:
                described = executor.describe()
                bar.set_phase("")
                for result in executor.map_unordered(run, itertools.chain([first], todo)):
                    results[result.shard.name] = result.without_details() if job.write else result
                    bar.update(result)
    finally:
        stream.stop()
    bar.finish()
    manifest = _finish(job, stream.plans, results, inputs)
    appended = sum(inputs[s].lines - recorded[s].lines for s in job.splits if s in recorded) if recorded else 0
    planned = itertools.chain.from_iterable(stream.plans.values())
    rejects = () if job.write else tuple(r for t in planned for r in results[t.name].rejects)
    return BuildReport(manifest=manifest, elapsed_s=time.monotonic() - job.started,
                       executor=described, resumed_shards=bar.kept, appended_lines=appended,
                       rejects=rejects, written=output is not None)  # fmt: skip


def _pending(job: _Job, stream: PlanStream, unchanged: dict[str, int], results: dict[str, ShardResult],
             bar: Progress) -> Iterator[ShardTask]:  # fmt: skip
    """The planned tasks still to build, as planning goes; finished ones go to ``results``."""
    planned = _counting(stream, bar)
    output = job.output
    if not job.write or output is None or not unchanged:
        yield from planned
        return
    done = set(output.child(DONE_DIR).list_names())
    sizes = output.list_sizes()
    with ThreadPoolExecutor(max_workers=RECORD_READS, thread_name_prefix="shardify-records",
                            initializer=block_in_this_thread) as pool:
        for task, result in _ordered(pool, planned, lambda t: _finished(output, t, unchanged, done, sizes)):
            if result is None:
                yield task
            else:
                results[task.name] = result.without_details()
                bar.update(result, kept=True)


def _counting(stream: PlanStream, bar: Progress) -> Iterator[ShardTask]:
    for task in stream:
        bar.planned()
        yield task
    bar.planning_done()


def _ordered(pool: ThreadPoolExecutor, items: Iterable[ShardTask], fn: Any) -> Iterator[tuple[ShardTask, Any]]:
    """``(item, fn(item))`` in order, up to ``RECORD_READS`` calls running ahead."""
    window: list[tuple[ShardTask, Any]] = []
    for item in items:
        window.append((item, pool.submit(fn, item)))
        if len(window) >= RECORD_READS:
            task, future = window.pop(0)
            yield task, future.result()
    for task, future in window:
        yield task, future.result()


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
    if output is not None:
        output.makedirs()
        write_trails(output, _full_results(job, output, plans, results))
    where = output.display(REJECTS_NAME) if output is not None else "the rejects above"
    check_reject_budget(splits, job.config.validation.max_reject_fraction, where)
    if not job.write:
        splits = {name: replace(info, shards=()) for name, info in splits.items()}
    manifest = Manifest(config=job.settings, splits=splits)
    if job.write and output is not None:
        remove_unplanned_shards(output, {t.name for ts in plans.values() for t in ts})
        remove_temp_files(output)  # a task killed mid-write (then retried) leaves one
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


def _full_results(job: _Job, output: Location, plans: dict[str, list[ShardTask]],
                  results: dict[str, ShardResult]) -> Iterator[ShardResult]:  # fmt: skip
    """Every shard's result with its rejects and warnings, in input order: read back from
    the done files when building (several at once), as they are when validating."""
    tasks = [task for split in job.splits for task in plans[split]]
    if not job.write:
        yield from (results[t.name] for t in tasks)
        return

    def full(task: ShardTask) -> ShardResult:
        result = results[task.name]
        if not (result.shard.rejected or result.shard.warnings):
            return result
        saved = load_result(output, task.name)
        if saved is None:
            raise BuildError(f"{output.display(result_name(task.name))} vanished before the build "
                             "finished; rerun the build")  # fmt: skip
        return saved

    with ThreadPoolExecutor(max_workers=RECORD_READS, thread_name_prefix="shardify-records",
                            initializer=block_in_this_thread) as pool:
        for _, result in _ordered(pool, tasks, full):
            yield result


def _finished(output: Location, task: ShardTask, unchanged: dict[str, int], done: set[str],
              sizes: dict[str, int]) -> Optional[ShardResult]:  # fmt: skip
    """The saved result of ``task`` when its shard is done from the very same input bytes:
    the same line and byte range, inside the part of the file known unchanged since, and a
    tar of the recorded size (``done`` and ``sizes`` come from one listing each)."""
    if f"{task.name}.json" not in done or task.end_byte > unchanged.get(task.split, -1):
        return None
    result = load_result(output, task.name)
    if result is None or not _same_input(result, task):
        return None
    return result if sizes.get(task.name) == result.shard.bytes else None


def _same_input(result: ShardResult, task: ShardTask) -> bool:
    shard = result.shard
    return (shard.name, shard.first_line, shard.end_line, shard.start_byte, shard.end_byte) == (
        task.name, task.first_line, task.end_line, task.start_byte, task.end_byte) and bool(shard.input_sha256)
