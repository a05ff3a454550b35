"""A thin fsspec layer: one :class:`Location` per dataset root or output root.

Local paths and any fsspec URL (``s3://bucket/prefix``, ``memory://x``) look the same to the
rest of shardify. Writes are atomic: a file appears under its final name only when whole.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from typing import IO, Any, Iterator, Optional

import fsspec
from fsspec.core import url_to_fs

from shardify.errors import AccessError, StorageError


class Location:
    """A root directory on some filesystem; names below it are ``/``-separated."""

    def __init__(self, url: str, storage_options: Optional[dict[str, Any]] = None) -> None:
        self.url = url.rstrip("/") if "://" in url else os.path.abspath(os.path.expanduser(url))
        self.storage_options = dict(storage_options or {})
        try:
            fs, root = url_to_fs(self.url, **self.storage_options)
        except (ValueError, ImportError) as exc:
            raise AccessError(f"{url}: cannot use this location: {exc}") from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def path(self, name: str) -> str:
        """The filesystem path of ``name`` below the root."""
        return posixpath.join(self.root, name) if name else self.root

    def display(self, name: str) -> str:
        """How ``name`` is shown to users (no credentials: those live in storage_options)."""
        return posixpath.join(self.url, name) if "://" in self.url else os.path.join(self.url, name)

    def exists(self, name: str) -> bool:
        return bool(self._call("check", name, self.fs.exists, self.path(name)))

    def isfile(self, name: str) -> bool:
        return bool(self._call("check", name, self.fs.isfile, self.path(name)))

    def size(self, name: str) -> int:
        return int(self._call("stat", name, self.fs.size, self.path(name)))

    def open(self, name: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        return self._call("open", name, self.fs.open, self.path(name), mode, **kwargs)

    def read_bytes(self, name: str) -> bytes:
        return bytes(self._call("read", name, self.fs.cat_file, self.path(name)))

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a file."""
        if end <= start:
            return b""
        return bytes(
            self._call("read", name, self.fs.cat_file, self.path(name), start=start, end=end)
        )

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the files directly below the root that start with ``prefix``."""
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot list: {exc}") from exc
        names = [posixpath.basename(str(e).rstrip("/")) for e in entries]
        return sorted(n for n in names if n.startswith(prefix))

    def makedirs(self, name: str = "") -> None:
        if self.is_local:
            os.makedirs(self.path(name), exist_ok=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` so that ``name`` appears only when complete."""
        if self.is_local:
            self.makedirs(posixpath.dirname(name))
            tmp = self.path(_temp_name(name))
            try:
                with open(tmp, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, self.path(name))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        self._call("write", name, self.fs.pipe_file, self.path(name), data)

    def staging_path(self, name: str) -> str:
        """A local path to write ``name`` into before :meth:`put_file` commits it.

        For local roots it sits beside the final name (so the commit is a rename); for
        remote roots it is a temporary local file.
        """
        if self.is_local:
            self.makedirs(posixpath.dirname(name))
            return self.path(_temp_name(name))
        handle, path = tempfile.mkstemp(prefix="shardify-", suffix="-" + posixpath.basename(name))
        os.close(handle)
        return path

    def put_file(self, local_path: str, name: str) -> None:
        """Upload (or move) a finished local file to ``name`` atomically; consumes it."""
        if self.is_local:
            self.makedirs(posixpath.dirname(name))
            try:
                os.replace(local_path, self.path(name))
            except OSError:  # another device: copy beside the target, then rename
                staged = self.path(_temp_name(name))
                shutil.copyfile(local_path, staged)
                os.replace(staged, self.path(name))
                os.unlink(local_path)
            return
        # S3 objects appear only when the PUT or multipart upload completes.
        try:
            self._call("upload", name, self.fs.put_file, local_path, self.path(name))
        finally:
            os.unlink(local_path)

    def delete(self, name: str) -> None:
        try:
            self.fs.rm(self.path(name), recursive=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"{self.display(name)}: cannot delete: {exc}") from exc

    def check_readable(self) -> None:
        """Fail early (AccessError) when the root cannot be listed at all."""
        try:
            if not self.fs.exists(self.root):
                raise AccessError(f"{self.url}: does not exist")
        except PermissionError as exc:
            raise AccessError(f"{self.url}: access denied: {exc}") from None
        except OSError as exc:
            raise AccessError(f"{self.url}: cannot reach: {exc}") from None

    def local_realpath(self, name: str) -> Optional[str]:
        """For local roots: the real path of ``name`` if it stays inside the root."""
        root = os.path.realpath(self.root)
        real = os.path.realpath(self.path(name))
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
        return None

    def iter_lines(self, name: str) -> Iterator[tuple[int, bytes]]:
        """Yield ``(byte_offset, raw_line)`` for each line, streaming, line ending kept."""
        with self.open(name, "rb") as handle:
            offset = 0
            for raw in handle:
                yield offset, raw
                offset += len(raw)

    def _call(self, what: str, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise StorageError(f"{self.display(name)}: cannot {what}: {exc}") from exc


def _temp_name(name: str) -> str:
    head, tail = posixpath.split(name)
    return posixpath.join(head, f".{tail}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
