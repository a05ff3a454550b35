"""A thin fsspec layer: one :class:`Location` per dataset root or output root.

Local paths and any fsspec URL (``s3://bucket/prefix``, ``memory://x``) look the same to the
rest of shardify. Writes are atomic: a file appears under its final name only when whole
(a rename locally; on S3 a single PUT or a multipart upload, both of which make the object
visible only when complete).

On remote filesystems every call is retried with exponential backoff on transient errors
(5xx, throttling, dropped connections) on top of the retries that botocore and s3fs already
do, and read handles reopen and resume at their position after such an error, so a flaky
network never turns into a wrongly rejected sample. Existence checks and listings bypass
fsspec's listing cache: other processes (Ray workers, an earlier run) write to the output.
Credentials (storage_options values, AWS secrets from the environment) are scrubbed from
every error message this module produces.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import posixpath
import random
import re
import shutil
import tempfile
import time
from typing import IO, Any, Callable, Iterator, Optional

import fsspec
from fsspec.core import url_to_fs

from shardify.errors import AccessError, StorageError
from shardify.layout import temp_name

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 6
"""Calls made per operation on a remote filesystem before a transient error is fatal."""
RETRY_BASE_S = 0.25
RETRY_MAX_S = 8.0
READ_BUFFER_BYTES = 1 << 20
UPLOAD_PART_BYTES = 64 << 20
"""S3 multipart part size: files of twice this or more are uploaded in parts."""

_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
              FileExistsError)  # fmt: skip
_TRANSPORT_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "http.client",
                      "ssl", "google", "azure")  # fmt: skip
_CREDENTIAL_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "ProfileNotFound", "NoAuthTokenError"}
"""botocore's "no usable credentials": asking again gives the same answer, at once."""
_BUCKET_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2"}
_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|sas|signature", re.I)
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_USERINFO = re.compile(r"(?<=://)[^/@]*@")



def normalise_location(url: str) -> str:
    """A location as one canonical string: absolute local path, or URL without trailing /."""
    if "://" in url:
        return url.rstrip("/")
    return os.path.abspath(os.path.expanduser(url))

class Location:
    """A root directory on some filesystem; names below it are ``/``-separated."""

    def __init__(self, url: str, storage_options: Optional[dict[str, Any]] = None) -> None:
        self.url = normalise_location(url)
        self.storage_options = dict(storage_options or {})
        fs, root = self._connect()
        self._fs: fsspec.AbstractFileSystem = fs
        self._pid = os.getpid()
        self.root: str = root.rstrip("/") or "/"
        self._real_root: Optional[str] = None

    def _connect(self) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            return url_to_fs(self.url, **_with_pool(self.url, self.storage_options))  # type: ignore[no-any-return]
        except (ValueError, ImportError, TypeError) as exc:
            raise AccessError(self._scrub(f"{self.display('')}: cannot use this location: {exc}")) from None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem client of *this* process.

        fsspec clients are not fork-safe (an S3 client made in a parent and used in a forked
        DataLoader worker raises "This class is not fork-safe"): after a fork the client is
        made anew in the child (fsspec's instance cache is keyed by pid, so it is new).
        """
        if self._pid != os.getpid():
            self._fs, _ = self._connect()
            self._pid = os.getpid()
        return self._fs

    def __repr__(self) -> str:
        return f"Location({self.display('')!r})"

    def child(self, name: str) -> Location:
        """The folder ``name`` below this root, as a location of its own."""
        return Location(self.url.rstrip("/") + "/" + name, self.storage_options)

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
        """How ``name`` is shown to users (never with credentials, even ones in the URL)."""
        url = _USERINFO.sub("", self.url)
        if not name:
            return url
        return posixpath.join(url, name) if "://" in url else os.path.join(url, name)

    # -- existence and listing (never answered from a stale listing cache) --

    def exists(self, name: str) -> bool:
        try:
            self._info(name)
        except FileNotFoundError:
            return False
        return True

    def isfile(self, name: str) -> bool:
        """True for an existing file; a transient error is retried, never taken as 'missing'."""
        return self.file_size(name) is not None

    def file_size(self, name: str) -> Optional[int]:
        """The size of an existing file, or None when ``name`` is missing or not a file."""
        try:
            info = self._info(name)
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def size(self, name: str) -> int:
        return int(self._info(name)["size"])

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the files and folders directly below the root that start with ``prefix``."""
        self._forget(self.root)
        try:
            entries = self._call("list", "", self.fs.ls, self.root, detail=False)
        except FileNotFoundError:
            return []
        names = [posixpath.basename(str(e).rstrip("/")) for e in entries]
        return sorted(n for n in names if n and n.startswith(prefix))

    def list_sizes(self, folder: str = "") -> dict[str, int]:
        """``{name: size}`` of the files directly in ``folder``: one listing (S3: paginated
        LIST, 1000 keys a request), never a request per file."""
        path = self.path(folder) if folder else self.root
        self._forget(path)
        try:
            entries = self._call("list", folder, self.fs.ls, path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return {posixpath.basename(str(e["name"]).rstrip("/")): int(e.get("size") or 0)
                for e in entries if e.get("type") == "file"}  # fmt: skip

    # -- reading --

    def open(self, name: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        """Open ``name``; remote read handles survive transient errors (reopen and resume)."""
        if mode != "rb" or self.is_local:
            return self._call("open", name, self.fs.open, self.path(name), mode, **kwargs)
        raw = _ResumingReader(self, name, kwargs)
        return io.BufferedReader(raw, buffer_size=READ_BUFFER_BYTES)  # type: ignore[return-value]

    def read_bytes(self, name: str) -> bytes:
        """The whole file; on S3 one GET (s3fs would first HEAD it to size a parallel read)."""
        options = {"max_concurrency": 1} if "s3" in _protocols(self.fs) else {}
        return bytes(self._call("read", name, self.fs.cat_file, self.path(name), **options))

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a file."""
        if end <= start:
            return b""
        data = self._call("read", name, self.fs.cat_file, self.path(name), start=start, end=end)
        return bytes(data)

    def iter_lines(self, name: str) -> Iterator[tuple[int, bytes]]:
        """Yield ``(byte_offset, raw_line)`` for each line, streaming, line ending kept."""
        with self.open(name, "rb") as handle:
            offset = 0
            for raw in handle:
                yield offset, raw
                offset += len(raw)

    # -- writing (atomic) --

    def makedirs(self, name: str = "") -> None:
        if self.is_local:
            os.makedirs(self.path(name), exist_ok=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` so that ``name`` appears only when complete."""
        if self.is_local:
            self.makedirs(posixpath.dirname(name))
            tmp = self.path(temp_name(name))
            try:
                with open(tmp, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, self.path(name))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        self._call("write", name, self.fs.pipe_file, self.path(name), data)
        self._forget(self.path(name))

    def staging_path(self, name: str) -> str:
        """A local path to write ``name`` into before :meth:`put_file` commits it.

        For local roots it sits beside the final name (so the commit is a rename); for
        remote roots it is a temporary local file.
        """
        if self.is_local:
            self.makedirs(posixpath.dirname(name))
            return self.path(temp_name(name))
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
                staged = self.path(temp_name(name))
                shutil.copyfile(local_path, staged)
                os.replace(staged, self.path(name))
                os.unlink(local_path)
            return
        # An S3 object appears only when its PUT or multipart upload completes; a retry
        # re-uploads the whole file, so a failed attempt never leaves part of it visible.
        options = {"chunksize": UPLOAD_PART_BYTES} if "s3" in _protocols(self.fs) else {}
        try:
            self._call("upload", name, self.fs.put_file, local_path, self.path(name), **options)
        finally:
            os.unlink(local_path)
            self._forget(self.path(name))

    def delete(self, name: str) -> None:
        """Remove a file or a whole folder (every object below the prefix on S3)."""
        try:
            self._call("delete", name, self.fs.rm, self.path(name), recursive=True)
        except FileNotFoundError:
            pass
        finally:
            self._forget(self.path(name))

    # -- start-of-run checks --

    def check_readable(self) -> None:
        """Fail early with one line (AccessError) when the root cannot be read at all."""
        try:
            self._info("")
        except FileNotFoundError:
            raise AccessError(self._missing_root_message()) from None
        except StorageError as exc:
            raise AccessError(str(exc)) from None

    def check_writable(self) -> None:
        """Fail early (AccessError) when the output cannot be written: missing bucket,
        bad credentials. A missing prefix is fine (it is created by the first write)."""
        if self.is_local or self._bucket() is None:
            return
        try:
            self._info("")
            return
        except FileNotFoundError:
            pass
        except StorageError as exc:
            raise AccessError(str(exc)) from None
        try:
            self._call("check", "", self.fs.info, self._bucket())
        except FileNotFoundError:
            raise AccessError(self._missing_root_message()) from None
        except StorageError as exc:
            raise AccessError(str(exc)) from None

    def local_realpath(self, name: str) -> Optional[str]:
        """For local roots: the real path of ``name`` if it stays inside the root."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        root = self._real_root
        real = os.path.realpath(self.path(name))
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
        return None

    # -- internals --

    def _info(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        self._forget(path)
        return dict(self._call("check", name, self.fs.info, path))

    def _forget(self, path: str) -> None:
        """Drop fsspec's cached listings of ``path`` and its parents (remote only)."""
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def _bucket(self) -> Optional[str]:
        if not set(_protocols(self.fs)) & _BUCKET_PROTOCOLS:
            return None
        return self.root.strip("/").split("/", 1)[0] or None

    def _missing_root_message(self) -> str:
        bucket = self._bucket()
        if bucket is not None:
            try:
                self._call("check", "", self.fs.info, bucket)
            except FileNotFoundError:
                return f"{self.display('')}: bucket {bucket!r} does not exist (create it, or fix the URL)"
            except StorageError as exc:
                return str(exc)
        return f"{self.display('')}: does not exist" + ("" if self.is_local else " (nothing below this prefix)")

    def _call(self, what: str, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one filesystem call; retry transient errors on remote filesystems.

        FileNotFoundError passes through unchanged (callers decide what 'missing' means);
        everything else becomes a StorageError whose one-line message names the location
        and never holds a credential.
        """
        attempts = 1 if self.is_local else RETRY_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return func(*args, **kwargs)
            except FileNotFoundError:
                raise
            except PermissionError as exc:
                raise StorageError(self._denied_message(what, name, exc)) from None
            except Exception as exc:
                if _is_credential_error(exc):
                    raise AccessError(f"{self.display(name)}: cannot {what}: no usable credentials "
                                      f"({type(exc).__name__}); give storage_options key/secret or "
                                      "profile, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                                      "AWS_PROFILE, or anon: true for a public bucket") from None
                if not (_is_transient(exc) or isinstance(exc, (OSError, ValueError))):
                    raise
                if attempt < attempts and _is_transient(exc):
                    delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                    log.warning("%s: cannot %s (%s); retry %d/%d in %.1f s", self.display(name),
                                what, self._describe(exc), attempt, attempts - 1, delay)  # fmt: skip
                    time.sleep(delay)
                    continue
                raise StorageError(f"{self.display(name)}: cannot {what}: {self._describe(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _denied_message(self, what: str, name: str, exc: BaseException) -> str:
        if self.is_local:
            return f"{self.display(name)}: cannot {what}: permission denied: {self._describe(exc)}"
        return (f"{self.display(name)}: access denied ({self._describe(exc)}); check the "
                "credentials (storage_options key/secret/profile, or the AWS environment) and "
                "the bucket policy")  # fmt: skip

    def _describe(self, exc: BaseException) -> str:
        """One line naming the error, without credentials."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if len(text) > 300:
            text = text[:297] + "..."
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        for secret in _secrets(self.storage_options):
            text = text.replace(secret, "***")
        return _USERINFO.sub("", text)


class _ResumingReader(io.RawIOBase):
    """A seekable read handle on a remote file that reopens and resumes after transient
    errors (the stream is cut, a 5xx outlasts the client's own retries)."""

    def __init__(self, location: Location, name: str, open_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self._location = location
        self._name = name
        self._kwargs = open_kwargs
        self._pos = 0
        self._file: Optional[IO[bytes]] = self._open()

    def _open(self) -> IO[bytes]:
        loc = self._location
        handle: IO[bytes] = loc._call("open", self._name, loc.fs.open, loc.path(self._name), "rb",
                                      **self._kwargs)  # fmt: skip
        if self._pos:
            handle.seek(self._pos)
        return handle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._handle().seek(offset, whence)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._location._call("read", self._name, self._read, len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read(self, size: int) -> bytes:
        try:
            return bytes(self._handle().read(size))
        except Exception:
            self._drop()  # reopened at self._pos by the retry
            raise

    def _handle(self) -> IO[bytes]:
        if self._file is None:
            self._file = self._open()
        return self._file

    def _drop(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # the connection is already broken
                pass

    def close(self) -> None:
        self._drop()
        super().close()


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: network and server-side errors, not 'missing' or 'denied'."""
    if isinstance(exc, _PERMANENT) or _is_credential_error(exc):
        return False
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:  # s3fs: 416 range not satisfiable,
        return False  # invalid argument: asking again gets the same answer
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    return any(cls.__module__.split(".")[0] in _TRANSPORT_MODULES or
               cls.__module__.startswith("http.client") for cls in type(exc).__mro__)  # fmt: skip


def _is_credential_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _CREDENTIAL_ERRORS for cls in type(exc).__mro__)


def _secrets(options: dict[str, Any]) -> list[str]:
    """Every credential-like value in ``options`` (nested too) and in the AWS environment."""
    found = [os.environ[key] for key in _SECRET_ENV if len(os.environ.get(key, "")) >= 4]

    def walk(value: Any, sensitive: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, sensitive or bool(_SECRET_KEY.search(str(key))))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, sensitive)
        elif sensitive and isinstance(value, str) and len(value) >= 4:
            found.append(value)

    walk(options, False)
    return sorted(set(found), key=len, reverse=True)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


S3_POOL_CONNECTIONS = 64
"""botocore keeps 10 connections per client by default: a shard task's 32 reads in flight
(io.max_concurrency) then wait for a connection. Used unless storage_options set their own."""


def _with_pool(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with an S3 connection pool big enough for concurrent reads."""
    if not url.startswith(("s3://", "s3a://")):
        return options
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("max_pool_connections", S3_POOL_CONNECTIONS)
    return {**options, "config_kwargs": config}
