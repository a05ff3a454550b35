"""What a rerun does with what an output already holds: the rerun table.

Same config, same input: nothing to do. Same config, lines appended: an incremental build.
Anything else refuses (exit 2) with one line that says what changed and how to go on
(``--overwrite``). ``--overwrite`` removes exactly what a build writes.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from shardify.config import describe_changes, settings_fingerprint
from shardify.errors import OutputMismatchError
from shardify.inputs import Change, classify, digest_input, first_change
from shardify.layout import (
    BUILD_STATE_NAME,
    DONE_DIR,
    REJECTS_NAME,
    STATE_DIR,
    WARNINGS_NAME,
    is_ours,
    is_shard_name,
    is_temp_name,
    line_digests_name,
)
from shardify.manifest import (
    BuildState,
    InputRecord,
    Manifest,
    has_manifest,
    read_build_state,
    read_manifest,
)
from shardify.storage import Location


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
    # A lone rejects.jsonl (+ warnings.jsonl) is a `shardify validate` report: the build replaces it.
    leftovers = [n for n in output.list_names()
                 if is_ours(n) and n not in (REJECTS_NAME, WARNINGS_NAME, STATE_DIR)]
    if previous is None and leftovers and not overwrite:
        raise OutputMismatchError(
            f"{output.display('')} already holds {leftovers[0]} but no shardify build "
            "state; rerun with --overwrite to replace it, or choose another output"
        )
    if overwrite:
        clear_output(output)
        return None
    remove_temp_files(output)
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


def read_inputs(source: Location, output: Optional[Location], splits: list[str],
                recorded: Optional[dict[str, InputRecord]]) -> tuple[dict[str, InputRecord], dict[str, Change]]:  # fmt: skip
    """Each split's JSONL as it is now (one fast hashing pass each), and how it relates to
    what the earlier build read; refuses (exit 2, naming the split and its first changed
    line) anything but unchanged or appended."""
    recorded = recorded or {}
    for split in sorted(set(recorded) - set(splits)):
        where = output.display("") if output is not None else "the output"
        raise OutputMismatchError(
            f"{split}: {recorded[split].file} was part of the build in {where} and is "
            "no longer built; rerun with --overwrite to rebuild without it"
        )
    inputs: dict[str, InputRecord] = {}
    changes: dict[str, Change] = {}
    for split in splits:
        old = recorded.get(split)
        inputs[split], prefix = digest_input(source, f"{split}.jsonl", prefix_at=old.bytes if old else None)
        # A split new since the build (e.g. test.jsonl added) is all appended.
        changes[split] = classify(old, inputs[split], prefix) if old else Change.APPENDED
        if old is not None and changes[split] is Change.CHANGED:
            assert output is not None  # recorded inputs come from an output
            raise _input_changed(source, output, split, old)
    return inputs, changes


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


def can_hold_validate_report(output: Location) -> bool:
    """``validate`` writes rejects.jsonl and warnings.jsonl into its output, but never over
    the report of a build (then it reports on the terminal only)."""
    return not (has_manifest(output) or output.exists(BUILD_STATE_NAME) or output.exists(DONE_DIR))


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
    remove_temp_files(output)


def remove_temp_files(output: Location) -> None:
    for name in output.list_names("."):
        if is_temp_name(name):
            output.delete(name)


def remove_unplanned_shards(output: Location, planned: set[str]) -> None:
    for name in output.list_names():
        if is_shard_name(name) and name not in planned:
            output.delete(name)
    done = output.child(DONE_DIR)
    for name in done.list_names():
        if name.removesuffix(".json") not in planned:
            done.delete(name)
