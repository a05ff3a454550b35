"""``build_shard``: the one unit of work. One planned shard in, one tar and its result out.

It reads its own byte range of the JSONL and its own media from the dataset root, so an
executor only ships the small :class:`~shardify.planning.ShardTask` and the config.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

import orjson

from shardify.config import Config
from shardify.errors import BuildError, MediaError, SampleError
from shardify.fetch import Fetched, Medium, concurrency_for, prefetch, release
from shardify.manifest import MediaFact, ShardRecord, ShardResult, save_result
from shardify.media.images import check_image
from shardify.planning import ShardTask
from shardify.schema import RejectRecord, SampleRecord, WarningRecord, is_blank, parse_line
from shardify.storage import Location
from shardify.tarwriter import TarShardWriter, member_name

WARN_NUM_FRAMES_DEFAULTED = "num_frames_defaulted"
WARN_VIDEO_PARTIAL = "video_partial_decode"
WARN_NUM_FRAMES_ABOVE_TOTAL = "num_frames_above_total"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """An accepted sample: its key and tar members (suffix -> bytes) in write order."""

    key: str
    members: list[tuple[str, bytes]]
    images: int = 0
    frames: int = 0
    warnings: tuple[WarningRecord, ...] = ()
    media: tuple[MediaFact, ...] = ()


def build_shard(task: ShardTask, config: Config, *, write: bool = True) -> ShardResult:
    """Check every line of ``task``, write the shard and its result record.

    With ``write=False`` (``shardify validate``) no tar is written and nothing is saved.
    Raises SampleError on the first rejected line when ``validation.on_error`` is ``fail``.
    """
    source = Location(config.input, config.storage_options)
    raw = source.read_range(task.file, task.start_byte, task.end_byte)
    digest = hashlib.sha256(raw).hexdigest()  # the input bytes this shard is built from
    if not write:
        return _summarise(task, digest, _check_lines(task, raw, source, config), writer=None)
    if config.output is None:
        raise BuildError("output: not set; a build needs the folder or s3:// prefix for the shards")
    output = Location(config.output, config.storage_options)
    staging = output.staging_path(task.name)
    try:
        with open(staging, "wb") as handle:
            writer = TarShardWriter(handle)
            result = _summarise(task, digest, _check_lines(task, raw, source, config), writer=writer)
        output.put_file(staging, task.name)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    save_result(output, result)
    return result


def _summarise(
    task: ShardTask,
    input_sha256: str,
    items: Iterator[Union[Sample, RejectRecord, None]],
    writer: Optional[TarShardWriter],
) -> ShardResult:
    rejects: list[RejectRecord] = []
    media: list[MediaFact] = []
    warnings: list[WarningRecord] = []
    samples = blank = images = frames = 0
    for item in items:
        if item is None:
            blank += 1
        elif isinstance(item, RejectRecord):
            rejects.append(item)
        else:
            samples += 1
            images += item.images
            frames += item.frames
            warnings.extend(item.warnings)
            media.extend(item.media)
            if writer is not None:
                for suffix, data in item.members:
                    writer.add(member_name(item.key, suffix), data)
    size, digest = writer.close() if writer is not None else (0, "")
    record = ShardRecord(
        name=task.name, samples=samples, bytes=size, sha256=digest,
        first_line=task.first_line, end_line=task.end_line, start_byte=task.start_byte,
        end_byte=task.end_byte, input_sha256=input_sha256, blank=blank, images=images,
        frames=frames, rejects_by_reason=dict(sorted(Counter(r.reason for r in rejects).items())),
        warnings=dict(sorted(Counter(w.reason for w in warnings).items())),
    )  # fmt: skip
    return ShardResult(split=task.split, index=task.index, shard=record, rejects=tuple(rejects),
                       warnings=tuple(warnings), media=tuple(media))  # fmt: skip


def iter_task_lines(task: ShardTask, source: Location, raw: bytes) -> Iterator[tuple[int, bytes]]:
    """``(0-based index, raw line)`` for each line of the task's byte range ``raw``."""
    parts = raw.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    expected = task.end_line - task.first_line
    if len(parts) != expected:
        raise BuildError(
            f"{source.display(task.file)}: expected {expected} lines in bytes "
            f"{task.start_byte}-{task.end_byte}, found {len(parts)}; did the file change "
            "during the build? Rerun the build."
        )
    for offset, line in enumerate(parts):
        yield task.first_line + offset, line


def _check_lines(
    task: ShardTask, raw: bytes, source: Location, config: Config
) -> Iterator[Union[Sample, RejectRecord, None]]:
    """Per line: None for blank, a RejectRecord, or an accepted Sample; media are fetched
    ahead of the checks (:mod:`shardify.fetch`), results come in line order."""
    parsed = _parse_lines(task, raw, source, config)
    fetched = prefetch(source, parsed, functools.partial(_media_of, config=config),
                       concurrency=concurrency_for(source, config.io.max_concurrency),
                       max_bytes=config.io.max_bytes_in_flight)  # fmt: skip
    for parsed_item, media in fetched:
        try:
            item = _accept(parsed_item, media, config) if isinstance(parsed_item, SampleRecord) else parsed_item
        finally:
            release(media)
        if isinstance(item, RejectRecord) and config.validation.on_error == "fail":
            raise SampleError(source.display(task.file), item.line, item.reason, item.detail)
        yield item


def _parse_lines(
    task: ShardTask, raw: bytes, source: Location, config: Config
) -> Iterator[Union[SampleRecord, RejectRecord, None]]:
    for index, line in iter_task_lines(task, source, raw):
        if is_blank(line):
            yield None
        else:
            yield parse_line(line, split=task.split, file=task.file, index=index,
                             max_num_frames=config.video.max_num_frames)  # fmt: skip


def _media_of(item: Union[SampleRecord, RejectRecord, None], *, config: Config) -> list[Medium]:
    if not isinstance(item, SampleRecord):
        return []
    limit = config.validation.max_image_bytes
    media = [Medium(path, f"images[{i}]", item.line, max_bytes=limit) for i, path in enumerate(item.image_paths)]
    if item.video_path is not None:
        media.append(Medium(item.video_path, "video.path", item.line, video=True,
                            max_bytes=config.validation.max_video_bytes))  # fmt: skip
    return media


def _accept(record: SampleRecord, media: list[Future[Fetched]], config: Config) -> Union[Sample, RejectRecord]:
    try:
        return make_sample(record, media, config)
    except MediaError as exc:
        return RejectRecord(split=record.split, line=record.line, reason=exc.code, detail=exc.detail)


def make_sample(record: SampleRecord, media: list[Future[Fetched]], config: Config) -> Sample:
    """Check the record's fetched media (in order) and assemble its members; raises MediaError."""
    doc: dict[str, Any] = dict(record.data)
    doc["source"] = {"split": record.split, "file": record.file, "line": record.line}
    members: list[tuple[str, bytes]] = []
    warnings: list[WarningRecord] = []
    facts: list[MediaFact] = []
    frames = 0
    if record.image_paths:
        suffixes = []
        for i in range(len(record.image_paths)):
            image = media[i].result().unwrap()
            checked = check_image(
                image.data,
                decode=config.validation.decode, max_pixels=config.validation.max_image_pixels,
                reencode=config.image.reencode, quality=config.image.quality,
            )  # fmt: skip
            facts.extend(f for f in (image.fact,) if f)
            suffix = f"image{i}.{checked.ext}"
            suffixes.append(suffix)
            members.append((suffix, checked.data))
        doc["image_paths"] = record.data["images"]
        doc["images"] = suffixes
    if record.video_path is not None:
        video = media[-1].result().unwrap()
        video_doc, frame_members, notes = _video_members(record, video.file, config)
        facts.extend(f for f in (video.fact,) if f)
        doc["video"] = video_doc
        members.extend(frame_members)
        frames = len(video_doc["frames"])
        warnings.extend(WarningRecord(split=record.split, line=record.line, reason=code, detail=detail)
                        for code, detail in notes)  # fmt: skip
    members.insert(0, ("json", orjson.dumps(doc)))
    return Sample(key=record.key, members=members, images=len(record.image_paths),
                  frames=frames, warnings=tuple(warnings), media=tuple(facts))  # fmt: skip


def _video_members(
    record: SampleRecord, file: str, config: Config
) -> tuple[dict[str, Any], list[tuple[str, bytes]], list[tuple[str, str]]]:
    """The video's json, its frame members, and its warnings as (code, detail)."""
    from shardify.media.video_worker import get_worker

    if record.video_path is None or record.num_frames is None:
        raise BuildError(f"line {record.line}: video record without path or num_frames")
    video = get_worker().extract(
        file, num_frames=record.num_frames, sampling=config.video.sampling,
        jpeg_quality=config.video.jpeg_quality, max_side=config.video.max_side,
        timeout_s=config.video.timeout_s, seek=config.video.seek,
    )  # fmt: skip
    doc: dict[str, Any] = {
        "path": record.data["video"]["path"],
        "num_frames": record.num_frames,
        "sampling": config.video.sampling,
        **video.metadata(),
    }
    if record.num_frames_defaulted:
        doc["num_frames_defaulted"] = True
    members: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    frame_data = iter(video.frames)
    for suffix in video.suffixes:
        if suffix not in seen:
            seen.add(suffix)
            members.append((suffix, next(frame_data)))
    notes: list[tuple[str, str]] = []
    if record.num_frames_defaulted:
        notes.append((WARN_NUM_FRAMES_DEFAULTED, f"video.num_frames is missing; {record.num_frames} "
                      "frames were sampled (the default)"))  # fmt: skip
    if record.num_frames > video.total_frames:
        notes.append((WARN_NUM_FRAMES_ABOVE_TOTAL, f"num_frames {record.num_frames} is above the "
                      f"video's {video.total_frames} frame(s), so frames repeat (as the Aria "
                      "loader does); lower num_frames"))  # fmt: skip
    if video.warning:
        notes.append((WARN_VIDEO_PARTIAL, video.warning))
    return doc, members, notes
