"""``build_shard``: the one unit of work. One planned shard in, one tar and its result out.

It reads its own byte range of the JSONL and its own media from the dataset root, so an
executor only ships the small :class:`~shardify.planning.ShardTask` and the config.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
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
from shardify.manifest import MediaFact, ShardRecord, ShardResult, save_result
from shardify.media.images import check_image
from shardify.planning import ShardTask
from shardify.progress import human_bytes
from shardify.rejects import FILE_TOO_LARGE, MISSING_FILE, PATH_OUTSIDE_ROOT, UNREADABLE_FILE
from shardify.schema import RejectRecord, SampleRecord, is_blank, parse_line
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
    media: tuple[MediaFact, ...] = ()


def build_shard(task: ShardTask, config: Config, *, write: bool = True) -> ShardResult:
    """Check every line of ``task``, write the shard and its result record.

    With ``write=False`` (``shardify validate``) no tar is written and nothing is saved.
    Raises SampleError on the first rejected line when ``validation.on_error`` is ``fail``.
    """
    source = Location(config.input, config.storage_options)
    output = Location(config.output, config.storage_options)
    raw = source.read_range(task.file, task.start_byte, task.end_byte)
    digest = hashlib.sha256(raw).hexdigest()  # the input bytes this shard is built from
    if not write:
        return _summarise(task, digest, _check_lines(task, raw, source, config), writer=None)
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
        warnings=dict(sorted(warnings.items())),
    )  # fmt: skip
    return ShardResult(split=task.split, index=task.index, shard=record, rejects=tuple(rejects),
                       media=tuple(media))  # fmt: skip


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
    """Per line: None for blank, a RejectRecord, or an accepted Sample."""
    for index, line in iter_task_lines(task, source, raw):
        if is_blank(line):
            yield None
            continue
        parsed = parse_line(line, split=task.split, file=task.file, index=index,
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
    media: list[MediaFact] = []
    frames = 0
    if record.image_paths:
        suffixes = []
        for i, path in enumerate(record.image_paths):
            data = read_media(source, path, f"images[{i}]", max_bytes=config.validation.max_image_bytes)
            checked = check_image(
                data,
                decode=config.validation.decode, max_pixels=config.validation.max_image_pixels,
                reencode=config.image.reencode, quality=config.image.quality,
            )  # fmt: skip
            media.append(media_fact(source, record.line, path, len(data)))
            suffix = f"image{i}.{checked.ext}"
            suffixes.append(suffix)
            members.append((suffix, checked.data))
        doc["image_paths"] = record.data["images"]
        doc["images"] = suffixes
    if record.video_path is not None:
        video_doc, frame_members, warning, fact = _video_members(record, source, config)
        media.append(fact)
        doc["video"] = video_doc
        members.extend(frame_members)
        frames = len(video_doc["frames"])
        warnings.extend(w for w in (warning,) if w)
        if record.num_frames_defaulted:
            warnings.append(WARN_NUM_FRAMES_DEFAULTED)
    members.insert(0, ("json", orjson.dumps(doc)))
    return Sample(key=record.key, members=members, images=len(record.image_paths),
                  frames=frames, warnings=tuple(warnings), media=tuple(media))  # fmt: skip


def media_fact(source: Location, line: int, path: str, size: int) -> MediaFact:
    """What ``verify --input`` later compares: the size read, and the mtime of a local file."""
    if not source.is_local:
        return MediaFact(line=line, path=path, bytes=size)
    real = source.local_realpath(path)
    try:
        info = os.stat(real) if real is not None else None
    except OSError:
        info = None
    mtime = info.st_mtime_ns if info is not None else None
    return MediaFact(line=line, path=path, bytes=size, mtime_ns=mtime)


def _video_members(
    record: SampleRecord, source: Location, config: Config
) -> tuple[dict[str, Any], list[tuple[str, bytes]], Optional[str], MediaFact]:
    from shardify.media.video_worker import extract_video_file

    if record.video_path is None or record.num_frames is None:
        raise BuildError(f"line {record.line}: video record without path or num_frames")
    limit = config.validation.max_video_bytes
    size = resolve_media(source, record.video_path, "video.path", max_bytes=limit)
    video = extract_video_file(source, record.video_path, num_frames=record.num_frames,
                               config=config.video, max_bytes=limit)  # fmt: skip
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
    fact = media_fact(source, record.line, record.video_path, size)
    return doc, members, WARN_VIDEO_PARTIAL if video.warning else None, fact


def resolve_media(source: Location, path: str, where: str, *, max_bytes: Optional[int] = None) -> int:
    """Check that ``path`` stays inside the root and names a readable regular file; its size.

    Raises MediaError for anything that concerns this one file (missing, a symlink loop, a
    name too long, a socket, no permission, larger than ``max_bytes``); a failure of the
    store itself (EIO, an outage) stays a StorageError and stops the build.
    """
    if source.is_local:
        real = _local_media_path(source, path, where)
        info = _stat_media(real, source, path, where)
        _check_local_stat(info, source, path, where, max_bytes)
        return info.st_size
    size = source.file_size(path)  # one HEAD: existence, kind and size
    if size is None:
        raise _missing(source, path, where)
    if max_bytes is not None and size > max_bytes:
        raise _too_large(where, path, size, max_bytes)
    return size


def read_media(source: Location, path: str, where: str, *, max_bytes: Optional[int] = None) -> bytes:
    """The bytes of a media file inside the root; MediaError when it is not a readable file.

    Memory is bounded: a file above ``max_bytes`` is rejected from its size before any byte
    is read (local: one ``fstat``; remote: a ranged GET of at most ``max_bytes + 1`` bytes).
    A local root reads the resolved path with one ``open`` (the fsspec ``info`` +
    ``cat_file`` pair cost a third of a pass-through build).
    """
    if source.is_local:
        return _read_local(source, _local_media_path(source, path, where), path, where, max_bytes)
    try:  # one GET; a missing object raises FileNotFoundError (no HEAD first)
        if max_bytes is None:
            return source.read_bytes(path)
        data = source.read_range(path, 0, max_bytes + 1)
    except (FileNotFoundError, IsADirectoryError):
        raise _missing(source, path, where) from None
    if len(data) > max_bytes:
        raise _too_large(where, path, source.size(path), max_bytes)
    return data


def _local_media_path(source: Location, path: str, where: str) -> str:
    real = source.local_realpath(path)
    if real is None:
        raise MediaError(
            PATH_OUTSIDE_ROOT, f"{where} {path!r} is a symlink that leads outside the dataset root"
        )
    return real


# errno values that say something about one file, never about the store (docs: "What stops
# a build and what does not"). Anything else (EIO, ENOSPC, ...) fails the build.
_MISSING_ERRNOS = {errno.ENOENT, errno.ENOTDIR}
_FILE_ERRNOS = {errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO, errno.EACCES, errno.EPERM,
                errno.EISDIR, errno.ENODEV, errno.EOVERFLOW, errno.EINVAL}  # fmt: skip
_SPECIAL_KINDS = ((stat.S_ISSOCK, "a socket"), (stat.S_ISFIFO, "a FIFO"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip


def _os_error(exc: OSError, source: Location, path: str, where: str, doing: str) -> Exception:
    """A per-sample MediaError for errors about this file; StorageError for the store's."""
    if exc.errno in _MISSING_ERRNOS:
        return _missing(source, path, where)
    words = exc.strerror or str(exc)
    if exc.errno in _FILE_ERRNOS:
        return MediaError(UNREADABLE_FILE, f"{where} {_shown(path)}: cannot {doing}: {words}")
    return StorageError(f"{source.display(_shown(path))}: cannot {doing}: {words}")


def _stat_media(real: str, source: Location, path: str, where: str) -> os.stat_result:
    try:
        return os.stat(real)
    except OSError as exc:
        raise _os_error(exc, source, path, where, "stat") from None


def _check_local_stat(
    st: os.stat_result, source: Location, path: str, where: str, max_bytes: Optional[int]
) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise _missing(source, path, where)
    for is_kind, kind in _SPECIAL_KINDS:
        if is_kind(st.st_mode):
            raise MediaError(UNREADABLE_FILE, f"{where} {_shown(path)} is {kind}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise _too_large(where, path, st.st_size, max_bytes)


def _read_local(source: Location, real: str, path: str, where: str, max_bytes: Optional[int]) -> bytes:
    """Read a regular file whole, after its fstat said what it is and how big."""
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    except OSError as exc:
        raise _os_error(exc, source, path, where, "open") from None
    try:
        st = os.fstat(fd)
        _check_local_stat(st, source, path, where, max_bytes)
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(st.st_size + 1)
    except OSError as exc:
        raise _os_error(exc, source, path, where, "read") from None
    finally:
        os.close(fd)
    if len(data) != st.st_size:
        raise MediaError(UNREADABLE_FILE, f"{where} {_shown(path)} changed size while it was read "
                                          f"({st.st_size} -> {len(data)}+ bytes); rerun the build")  # fmt: skip
    return data


def _too_large(where: str, path: str, size: int, limit: int) -> MediaError:
    return MediaError(FILE_TOO_LARGE, f"{where} {_shown(path)} is {human_bytes(size)} "
                                      f"({size} bytes), above the limit of {human_bytes(limit)}; "
                                      "raise validation.max_image_bytes / max_video_bytes")  # fmt: skip


def _shown(path: str) -> str:
    """A path for a message: quoted, and cut when absurdly long (a 5000-byte name)."""
    text = repr(path)
    return text if len(text) <= 160 else text[:120] + f"...' ({len(path)} characters)"


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
