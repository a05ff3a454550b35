"""One build at a time per output: a lease file that a second build respects.

A build writes ``_shardify/locks/<token>.json`` (host, pid, start, heartbeat), then lists the
folder: if any other live lease is there, it removes its own and refuses. Two builds that
start together may both refuse (never both run). The lease is renewed every
``HEARTBEAT_S``; one that was not renewed for ``LEASE_S``, or whose process is gone on this
host, is stale (a crashed or killed build) and is removed by the next build. Works on any
store with read-after-write listings (local disks, S3).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import orjson

from shardify.errors import OutputMismatchError
from shardify.interrupts import block_in_this_thread
from shardify.layout import LOCK_DIR, lock_name
from shardify.storage import Location

LEASE_S = 120.0
HEARTBEAT_S = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    token: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "host": self.host, "pid": self.pid,
                "started": self.started, "heartbeat": self.heartbeat}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        return cls(token=str(data["token"]), host=str(data["host"]), pid=int(data["pid"]),
                   started=float(data["started"]), heartbeat=float(data["heartbeat"]))  # fmt: skip

    def is_stale(self, now: float, host: str) -> bool:
        if self.host == host and not _pid_alive(self.pid):
            return True
        return now - self.heartbeat > LEASE_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``with OutputLock(output):`` holds the output's lease for the block."""

    def __init__(self, output: Location) -> None:
        self.output = output
        self.host = socket.gethostname()
        now = time.time()
        self.lease = Lease(token=uuid.uuid4().hex, host=self.host, pid=os.getpid(), started=now, heartbeat=now)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> OutputLock:
        self._refuse_if_held(self._others(clean=True))
        self._write(self.lease)
        others = self._others(clean=False)
        if others:
            self.output.delete(lock_name(self.lease.token))
            self._refuse_if_held(others)
        self._thread = threading.Thread(target=self._renew, name="shardify-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.output.delete(lock_name(self.lease.token))

    def _others(self, *, clean: bool) -> list[Lease]:
        """Live leases of other builds; with ``clean``, stale ones are removed."""
        live = []
        now = time.time()
        for name in self._lock_files():
            lease = self._read(name)
            if lease is None or lease.token == self.lease.token:
                continue
            if lease.is_stale(now, self.host):
                if clean:
                    self.output.delete(f"{LOCK_DIR}/{name}")
                continue
            live.append(lease)
        return live

    def _lock_files(self) -> list[str]:
        return [n for n in self.output.child(LOCK_DIR).list_names() if n.endswith(".json")]

    def _read(self, name: str) -> Optional[Lease]:
        try:
            return Lease.from_json(orjson.loads(self.output.read_bytes(f"{LOCK_DIR}/{name}")))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # a lease being written; the next listing sees it whole

    def _refuse_if_held(self, others: list[Lease]) -> None:
        if not others:
            return
        other = min(others, key=lambda lease: lease.started)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.started))
        raise OutputMismatchError(
            f"{self.output.display('')} is being built by another shardify build "
            f"(host {other.host}, pid {other.pid}, since {since}); wait for it to finish. If no "
            f"such build runs, its lease expires {LEASE_S:.0f} s after its last renewal, or delete "
            f"{self.output.display(lock_name(other.token))}"
        )

    def _write(self, lease: Lease) -> None:
        self.output.write_bytes(lock_name(lease.token), orjson.dumps(lease.to_json()))

    def _renew(self) -> None:
        block_in_this_thread()
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write(_renewed(self.lease))
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease
                continue


def _renewed(lease: Lease) -> Lease:
    return Lease(token=lease.token, host=lease.host, pid=lease.pid, started=lease.started, heartbeat=time.time())
