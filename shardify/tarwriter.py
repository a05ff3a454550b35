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


def split_member_name(name: str) -> tuple[str, str]:
    """The inverse of :func:`member_name`: ``KEY.suffix`` -> ``(KEY, suffix)``."""
    key, _, suffix = name.partition(".")
    return key, suffix


def member_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a shard: header plus padded data."""
    return tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _tarinfo_header(name: str, size: int) -> bytes:
    """The USTAR header ``tarfile`` writes for a member with shardify's fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = MEMBER_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")


# Every header field but name (0:100), size (124:136) and checksum (148:156) is the same
# for all members, so headers are made by patching tarfile's own header for one member.
_TEMPLATE = _tarinfo_header("x", 0)
_FIXED_SUM = sum(_TEMPLATE[100:124]) + sum(_TEMPLATE[136:148]) + 8 * 32 + sum(_TEMPLATE[156:])
_MAX_SIZE = 8**11  # 11 octal digits; larger members take tarfile's own path


def member_header(name: str, size: int) -> bytes:
    """``_tarinfo_header(name, size)`` byte for byte, without building a TarInfo (the
    pure-Python TarInfo.tobuf was a fifth of a pass-through build's CPU time)."""
    encoded = name.encode(tarfile.ENCODING, "surrogateescape")
    if len(encoded) > 100 or not 0 <= size < _MAX_SIZE:
        return _tarinfo_header(name, size)
    name_field = encoded.ljust(100, tarfile.NUL)
    size_field = b"%011o\0" % size
    checksum = _FIXED_SUM + sum(name_field) + sum(size_field)
    return b"".join((name_field, _TEMPLATE[100:124], size_field, _TEMPLATE[136:148],
                     b"%06o\0 " % checksum, _TEMPLATE[156:]))  # fmt: skip


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
    """Write tar members with fixed metadata to a binary file object.

    The bytes are those of ``tarfile.open(mode="w|", format=USTAR)`` (same headers,
    512-byte padding, two zero blocks and 10240-byte record padding at the end), written
    directly: ``TarFile.addfile`` copies each member in 16 KiB pieces through two buffers,
    which cost more than the rest of a pass-through build.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._out = _HashingWriter(fileobj)
        self._names: set[str] = set()
        self._closed = False

    def add(self, name: str, data: bytes) -> None:
        if self._closed:
            raise ValueError("the tar writer is closed")
        if name in self._names:
            raise ValueError(f"duplicate tar member {name!r}")
        self._names.add(name)
        self._out.write(member_header(name, len(data)))
        self._out.write(data)
        remainder = len(data) % tarfile.BLOCKSIZE
        if remainder:
            self._out.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def close(self) -> tuple[int, str]:
        """Finish the archive; return its size in bytes and sha256 hex digest."""
        if not self._closed:
            self._closed = True
            self._out.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
            remainder = self._out.bytes % tarfile.RECORDSIZE
            if remainder:
                self._out.write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
        return self._out.bytes, self._out.digest.hexdigest()
