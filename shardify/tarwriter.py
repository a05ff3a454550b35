"""Deterministic tar members: fixed mtime, owner and mode; sha256 and size as written.

The same members in the same order always give the same bytes, so rebuilding a shard
(after a crash, on another executor) reproduces it exactly.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import IO, Any

MEMBER_MODE = 0o644


def member_name(key: str, suffix: str) -> str:
    """``KEY.suffix``; keys never contain dots, so webdataset splits at the right place."""
    if "." in key or "/" in key:
        raise ValueError(f"key {key!r} must not contain '.' or '/'")
    return f"{key}.{suffix}"


class _HashingWriter:
    """A write-only file wrapper that counts and hashes every byte."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.bytes


class TarShardWriter:
    """Write tar members with fixed metadata to a binary file object."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._out = _HashingWriter(fileobj)
        self._tar = tarfile.open(fileobj=self._out, mode="w|", format=tarfile.USTAR_FORMAT)  # type: ignore[call-overload]
        self._names: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        if name in self._names:
            raise ValueError(f"duplicate tar member {name!r}")
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = MEMBER_MODE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        self._tar.addfile(info, _Bytes(data))

    def close(self) -> tuple[int, str]:
        """Finish the archive; return its size in bytes and sha256 hex digest."""
        self._tar.close()
        return self._out.bytes, self._out.digest.hexdigest()


class _Bytes:
    """A minimal readable view of ``bytes`` for ``TarFile.addfile``."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._pos + size)
        chunk = self._view[self._pos : end].tobytes()
        self._pos = end
        return chunk
