"""One media file of the dataset root, read as a shard task needs it: bytes (an image) or a
checked path (a video), with every failure sorted into a per-sample reject or a store error.

Memory is bounded: a file above its limit is rejected from its size before any byte is read.
An OS error is sorted by errno: about this one file (missing, a symlink loop, a name too
long, a socket, no permission) it is a MediaError with a reject code; about the store (EIO,
ENOSPC, an outage) it stays a StorageError and stops the build.
"""

from __future__ import annotations

import difflib
import errno
import itertools
import os
import posixpath
import stat
from typing import Optional

from shardify.errors import MediaError, StorageError
from shardify.manifest import MediaFact
from shardify.progress import human_bytes
from shardify.rejects import FILE_TOO_LARGE, MISSING_FILE, PATH_OUTSIDE_ROOT, UNREADABLE_FILE
from shardify.schema import quote
from shardify.storage import Location


def resolve_media(source: Location, path: str, where: str, *, max_bytes: Optional[int] = None) -> int:
    """Check that ``path`` stays inside the root and names a readable regular file; its size.

    Raises MediaError for anything that concerns this one file (missing, a symlink loop, a
    name too long, a socket, no permission, larger than ``max_bytes``); a failure of the
    store itself (EIO, an outage) stays a StorageError and stops the build.
    """
    if source.is_local:
        real = local_media_path(source, path, where)
        info = _stat_media(real, source, path, where)
        _check_local_stat(info, source, path, where, max_bytes)
        return info.st_size
    size = source.file_size(path)  # one HEAD: existence, kind and size
    if size is None:
        raise _missing(source, path, where)
    if max_bytes is not None and size > max_bytes:
        raise too_large(where, path, size, max_bytes)
    return size


def read_media(source: Location, path: str, where: str, *, max_bytes: Optional[int] = None) -> bytes:
    """The bytes of a media file inside the root; MediaError when it is not a readable file.

    Memory is bounded: a file above ``max_bytes`` is rejected from its size before any byte
    is read (local: one ``fstat``; remote: a ranged GET of at most ``max_bytes + 1`` bytes).
    A local root reads the resolved path with one ``open`` (the fsspec ``info`` +
    ``cat_file`` pair cost a third of a pass-through build).
    """
    if source.is_local:
        return _read_local(source, local_media_path(source, path, where), path, where, max_bytes)
    try:  # one GET; a missing object raises FileNotFoundError (no HEAD first)
        if max_bytes is None:
            return source.read_bytes(path)
        data = source.read_range(path, 0, max_bytes + 1)
    except (FileNotFoundError, IsADirectoryError):
        raise _missing(source, path, where) from None
    if len(data) > max_bytes:
        raise too_large(where, path, source.size(path), max_bytes)
    return data


def local_media_path(source: Location, path: str, where: str) -> str:
    real = source.local_realpath(path)
    if real is None:
        raise MediaError(
            PATH_OUTSIDE_ROOT, f"{where} {quote(path)} is a symlink that leads outside the dataset root"
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
        raise too_large(where, path, st.st_size, max_bytes)


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


def too_large(where: str, path: str, size: int, limit: int) -> MediaError:
    return MediaError(FILE_TOO_LARGE, f"{where} {_shown(path)} is {human_bytes(size)} "
                                      f"({size} bytes), above the limit of {human_bytes(limit)}; "
                                      "raise validation.max_image_bytes / max_video_bytes")  # fmt: skip


def _shown(path: str) -> str:
    """A path for a message: quoted, and cut when absurdly long (a 5000-byte name)."""
    text = quote(path)
    return text if len(text) <= 160 else text[:120] + f"...' ({len(path)} characters)"


def _missing(source: Location, path: str, where: str) -> MediaError:
    hint = _close_match(source, path) if source.is_local else None
    return MediaError(
        MISSING_FILE,
        f"{where} {quote(path)} not found under {source.display('')}"
        + (f"; did you mean {quote(hint)}?" if hint else ""),
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
