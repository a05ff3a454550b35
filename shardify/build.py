"""``build_shard``: the one unit of work. One planned shard in, one tar and its result out.

It reads its own byte range of the JSONL and its own media from the dataset root, so an
executor only ships the small :class:`~shardify.planning.ShardTask` and the config.
"""

from __future__ import annotations

import difflib
import itertools
import os
import posixpath
import stat
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

import orjson

from shardify.config import Config
from shardify.errors import BuildError, MediaError, SampleError, StorageError
from shardify.manifest import ShardRecord, ShardResult, save_result
from shardify.media.images import check_image
from shardify.planning import ShardTask
from shardify.schema import (
    MISSING_FILE,
    PATH_OUTSIDE_ROOT,
    RejectRecord,
    SampleRecord,
    is_blank,
    parse_line,
)
from shardify.storage import Location
from shardify.tarwriter import TarShardWriter, member_name

WARN_NUM_FRAMES_DEFAULTED = "num_frames_defaulted"
WARN_VIDEO_PARTIAL = "video_partial_decode"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """An accepted sample: its key and tar members (suffix -> bytes) in write order."""

    key: str
    members: list[tuple[str, bytes]]
    images: int = 0
    frames: int = 0
    warnings: tuple[str, ...] = ()


def build_shard(task: ShardTask, config: Config, *, write: bool = True) -> ShardResult:
    """Check every line of ``task``, write the shard and its result record.

    With ``write=False`` (``shardify validate``) no tar is written and nothing is saved.
    Raises SampleError on the first rejected line when ``validation.on_error`` is ``fail``.
    """
    source = Location(config.input, config.storage_options)
    output = Location(config.output, config.storage_options)
    if not write:
        return _summarise(task, _check_lines(task, source, config), writer=None)
    staging = output.staging_path(task.name)
    try:
        with open(staging, "wb") as handle:
            writer = TarShardWriter(handle)
            result = _summarise(task, _check_lines(task, source, config), writer=writer)
        output.put_file(staging, task.name)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    save_result(output, result)
    return result


def _summarise(
    task: ShardTask,
    items: Iterator[Union[Sample, RejectRecord, None]],
    writer: Optional[TarShardWriter],
) -> ShardResult:
    rejects: list[RejectRecord] = []
    warnings: Counter[str] = Counter()
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
            warnings.update(item.warnings)
            if writer is not None:
                for suffix, data in item.members:
                    writer.add(member_name(item.key, suffix), data)
    size, digest = writer.close() if writer is not None else (0, "")
    return ShardResult(
        split=task.split, index=task.index,
        shard=ShardRecord(name=task.name, samples=samples, bytes=size, sha256=digest),
        lines=task.end_line - task.first_line, blank=blank, rejects=rejects,
        warnings=dict(sorted(warnings.items())), frames=frames, images=images,
    )  # fmt: skip


def iter_task_lines(task: ShardTask, source: Location) -> Iterator[tuple[int, bytes]]:
    """``(0-based index, raw line)`` for each line of the task's byte range."""
    raw = source.read_range(task.file, task.start_byte, task.end_byte)
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
    task: ShardTask, source: Location, config: Config
) -> Iterator[Union[Sample, RejectRecord, None]]:
    """Per line: None for blank, a RejectRecord, or an accepted Sample."""
    for index, raw in iter_task_lines(task, source):
        if is_blank(raw):
            yield None
            continue
        parsed = parse_line(raw, split=task.split, file=task.file, index=index,
                            max_num_frames=config.video.max_num_frames)  # fmt: skip
        item = parsed if isinstance(parsed, RejectRecord) else _accept(parsed, source, config)
        if isinstance(item, RejectRecord) and config.validation.on_error == "fail":
            raise SampleError(source.display(task.file), item.line, item.reason, item.detail)
        yield item


def _accept(record: SampleRecord, source: Location, config: Config) -> Union[Sample, RejectRecord]:
    try:
        return make_sample(record, source, config)
    except MediaError as exc:
        return RejectRecord(split=record.split, line=record.line, reason=exc.code, detail=exc.detail)


def make_sample(record: SampleRecord, source: Location, config: Config) -> Sample:
    """Check the record's media and assemble its members; raises MediaError."""
    doc: dict[str, Any] = dict(record.data)
    doc["source"] = {"split": record.split, "file": record.file, "line": record.line}
    members: list[tuple[str, bytes]] = []
    warnings: list[str] = []
    frames = 0
    if record.image_paths:
        suffixes = []
        for i, path in enumerate(record.image_paths):
            checked = check_image(
                read_media(source, path, f"images[{i}]"),
                decode=config.validation.decode, max_pixels=config.validation.max_image_pixels,
                reencode=config.image.reencode, quality=config.image.quality,
            )  # fmt: skip
            suffix = f"image{i}.{checked.ext}"
            suffixes.append(suffix)
            members.append((suffix, checked.data))
        doc["image_paths"] = record.data["images"]
        doc["images"] = suffixes
    if record.video_path is not None:
        video_doc, frame_members, warning = _video_members(record, source, config)
        doc["video"] = video_doc
        members.extend(frame_members)
        frames = len(video_doc["frames"])
        warnings.extend(w for w in (warning,) if w)
        if record.num_frames_defaulted:
            warnings.append(WARN_NUM_FRAMES_DEFAULTED)
    members.insert(0, ("json", orjson.dumps(doc)))
    return Sample(key=record.key, members=members, images=len(record.image_paths),
                  frames=frames, warnings=tuple(warnings))  # fmt: skip


def _video_members(
    record: SampleRecord, source: Location, config: Config
) -> tuple[dict[str, Any], list[tuple[str, bytes]], Optional[str]]:
    from shardify.media.video_worker import extract_video_file

    if record.video_path is None or record.num_frames is None:
        raise BuildError(f"line {record.line}: video record without path or num_frames")
    resolve_media(source, record.video_path, "video.path")
    video = extract_video_file(source, record.video_path, num_frames=record.num_frames, config=config.video)
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
    return doc, members, WARN_VIDEO_PARTIAL if video.warning else None


def resolve_media(source: Location, path: str, where: str) -> None:
    """Check that ``path`` stays inside the root and names an existing file."""
    if source.is_local:
        _local_media_path(source, path, where)
    if not source.isfile(path):
        raise _missing(source, path, where)


def read_media(source: Location, path: str, where: str) -> bytes:
    """The bytes of a media file inside the root; MediaError when outside it or missing.

    A local root reads the resolved path with one ``open`` (the fsspec ``info`` +
    ``cat_file`` pair cost a third of a pass-through build); anything but a regular file
    is missing, as ``isfile`` would say.
    """
    if source.is_local:
        data = _read_regular_file(_local_media_path(source, path, where), source.display(path))
        if data is None:
            raise _missing(source, path, where)
        return data
    try:  # one GET; a missing object raises FileNotFoundError (no HEAD first)
        return source.read_bytes(path)
    except (FileNotFoundError, IsADirectoryError):
        raise _missing(source, path, where) from None


def _local_media_path(source: Location, path: str, where: str) -> str:
    real = source.local_realpath(path)
    if real is None:
        raise MediaError(
            PATH_OUTSIDE_ROOT, f"{where} {path!r} is a symlink that leads outside the dataset root"
        )
    return real


def _read_regular_file(real: str, shown: str) -> Optional[bytes]:
    """The file's bytes, or None when it does not exist or is not a regular file."""
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"{shown}: cannot read: {exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise StorageError(f"{shown}: cannot read: {exc}") from exc
    finally:
        os.close(fd)


def _missing(source: Location, path: str, where: str) -> MediaError:
    hint = _close_match(source, path) if source.is_local else None
    return MediaError(
        MISSING_FILE,
        f"{where} {path!r} not found under {source.display('')}"
        + (f"; did you mean {hint!r}?" if hint else ""),
    )


def _close_match(source: Location, path: str) -> Optional[str]:
    """A similarly named file for a missing local path (typo in a name or folder), if any."""
    head, name = posixpath.split(path)
    folders = [head] if os.path.isdir(source.path(head)) else _close_names(source, "", head, dirs=True)
    for folder in folders:
        for match in _close_names(source, folder, name, dirs=False):
            return posixpath.join(folder, match) if folder else match
    return None


def _close_names(source: Location, folder: str, name: str, *, dirs: bool) -> list[str]:
    try:
        with os.scandir(source.path(folder)) as entries:
            names = [e.name for e in itertools.islice(entries, 10_000) if e.is_dir() == dirs]
    except OSError:
        return []
    return difflib.get_close_matches(name, names, n=1, cutoff=0.75)
