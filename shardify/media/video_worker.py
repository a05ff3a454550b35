"""Frame extraction in a helper process, so a per-video time limit can stop a hung decoder.

A decoder stuck inside FFmpeg cannot be interrupted from Python, so each build process
(the in-process local executor, or each Ray worker) keeps one persistent helper process:
``python -m shardify.media.video_worker``. Requests and replies are length-prefixed
pickles over its stdin and a private copy of its stdout. When a video exceeds
``video.timeout_s`` the helper is killed by its pid and the video becomes a
``video_timeout`` reject; the next video starts a new helper (~0.3 s). The per-video
overhead of the round trip is well under a millisecond plus the JPEG bytes.

Test hook: when ``SHARDIFY_VIDEO_STALL_FOR_TESTS`` is set in the helper's environment,
a video whose path contains that text blocks forever, like a decoder that hangs.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any, Optional

from shardify.errors import MediaError
from shardify.media.video import ExtractedVideo, Sampling
from shardify.rejects import UNREADABLE_VIDEO, VIDEO_TIMEOUT

log = logging.getLogger(__name__)
_HEADER = struct.Struct("<Q")
STALL_ENV = "SHARDIFY_VIDEO_STALL_FOR_TESTS"


class VideoWorker:
    """One helper process that extracts frames; killed and restarted when a video times out."""

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> Optional[int]:
        """The helper's process id while one is running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def extract(
        self,
        path: str,
        *,
        num_frames: int,
        sampling: Sampling,
        jpeg_quality: int,
        max_side: Optional[int],
        timeout_s: float,
        seek: str = "auto",
    ) -> ExtractedVideo:
        """:func:`~shardify.media.video.extract_video` in the helper, within ``timeout_s``.

        Raises MediaError: the helper's own (unreadable_video), video_timeout when the limit
        passes, unreadable_video when the helper dies while decoding.
        """
        request = {"path": path, "num_frames": num_frames, "sampling": sampling,
                   "jpeg_quality": jpeg_quality, "max_side": max_side, "seek": seek}  # fmt: skip
        with self._lock:
            proc = self._ensure()
            deadline = time.monotonic() + timeout_s
            try:
                _write(proc.stdin, request)  # type: ignore[arg-type]
                reply = _read(proc.stdout, deadline)  # type: ignore[arg-type]
            except TimeoutError:
                self._stop(kill=True)
                raise MediaError(
                    VIDEO_TIMEOUT, f"decoding took longer than video.timeout_s={timeout_s:g} s"
                ) from None
            except (EOFError, OSError):
                code = self._stop(kill=True)
                raise MediaError(
                    UNREADABLE_VIDEO, f"the decoder process died (exit code {code})"
                ) from None
        if reply[0] == "ok":
            return reply[1]  # type: ignore[no-any-return]
        _, code, detail = reply
        raise MediaError(code, detail)

    def close(self) -> None:
        """Stop the helper (it also exits by itself when this process goes away)."""
        with self._lock:
            self._stop(kill=False)

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "shardify.media.video_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )  # fmt: skip
        log.debug("started video helper pid %d", self._proc.pid)
        return self._proc

    def _stop(self, *, kill: bool) -> Optional[int]:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if kill:
            proc.kill()
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass  # the helper is gone and the pipe is broken
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        return code


_worker: Optional[VideoWorker] = None
_worker_lock = threading.Lock()


def get_worker() -> VideoWorker:
    """This process's helper (started on first use, stopped at exit)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = VideoWorker()
            atexit.register(_worker.close)
        return _worker


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes], deadline: Optional[float]) -> Any:
    fd = stream.fileno()
    header = _read_exact(fd, _HEADER.size, deadline)
    return pickle.loads(_read_exact(fd, _HEADER.unpack(header)[0], deadline))


def _read_exact(fd: int, size: int, deadline: Optional[float]) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def serve() -> None:
    """The helper's loop: one request in, one reply out, until stdin closes."""
    import av.logging

    from shardify.media.video import extract_video

    av.logging.set_level(av.logging.PANIC)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray writes to stdout must not corrupt the replies
    requests = sys.stdin.buffer
    while True:
        try:
            request = _read(requests, None)
        except EOFError:
            return
        stall = os.environ.get(STALL_ENV)
        if stall and stall in request["path"]:
            threading.Event().wait()
        try:
            reply: tuple[Any, ...] = ("ok", extract_video(**request))
        except MediaError as exc:
            reply = ("error", exc.code, exc.detail)
        except Exception as exc:  # an exotic file must not take the helper down
            log.exception("unexpected error decoding %s", request["path"])
            reason = str(exc).replace(request["path"], "<video>")
            reply = (
                "error",
                UNREADABLE_VIDEO,
                f"unexpected decoder error: {type(exc).__name__}: {reason}",
            )
        _write(replies, reply)


if __name__ == "__main__":
    serve()
