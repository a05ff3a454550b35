"""The epoch of a ShardDataset, shared with the dataset's DataLoader worker copies.

A DataLoader worker iterates its own copy of the dataset. With ``persistent_workers=True``
that copy lives for every epoch, so an epoch set as a plain attribute in the main process
never reached it (every epoch repeated epoch 0's order). :class:`SharedEpoch` keeps the
epoch in shared memory (a ``multiprocessing`` RawArray): forked workers inherit the
mapping, spawn and forkserver workers receive it while they are being started (the only
time multiprocessing can hand shared memory over). Any other copy (``pickle``,
``copy.deepcopy``, another framework's serialisation) gets independent cells holding the
current values, so the dataset stays picklable everywhere.

No lock is needed: the training loop writes (``set_epoch``) and a worker reads only when
torch tells it to start a pass; each value is one aligned 8-byte word. Torch's persistent
workers call ``iter(dataset)`` again when they receive ``_ResumeIteration``, which the main
process sends from ``iter(loader)``, after ``set_epoch``; the message travels through a
pipe (system calls), which orders the write before the read.
"""

from __future__ import annotations

import ctypes
import operator
import os
from multiprocessing.context import get_spawning_popen
from multiprocessing.sharedctypes import RawArray
from typing import Any

from shardify.errors import ReaderError

MAX_EPOCH = 2**63 - 1


class SharedEpoch:
    """An epoch number visible to every process started from the one that made it.

    It also counts the reader states loaded in that (owning) process, so that a DataLoader
    worker can tell that the main process loaded a state after the worker was started: a
    persistent worker never receives it and must not go on as if nothing had been loaded.
    """

    __slots__ = ("_cells", "_owner")

    def __init__(self, epoch: int = 0) -> None:
        self._cells: Any = _new_cells(check_epoch(epoch), 0)
        self._owner = os.getpid()

    def get(self) -> int:
        return int(self._cells[0])

    def set(self, epoch: int) -> None:
        self._cells[0] = check_epoch(epoch)

    @property
    def loads(self) -> int:
        """States loaded so far in the owning process."""
        return int(self._cells[1])

    def count_load(self) -> int:
        """One more state loaded (call it in the owning process); the new count."""
        self._cells[1] += 1
        return self.loads

    def is_owner(self) -> bool:
        """Whether this is the process that made the cells (not one of its workers)."""
        return os.getpid() == self._owner

    def __getstate__(self) -> dict[str, Any]:
        if get_spawning_popen() is not None:  # a worker being started: share the cells
            return {"cells": self._cells, "owner": self._owner}
        return {"epoch": self.get(), "loads": self.loads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "cells" in state:
            self._cells, self._owner = state["cells"], int(state["owner"])
        else:  # an independent copy, owned by the process that unpickles it
            self._cells = _new_cells(int(state["epoch"]), int(state["loads"]))
            self._owner = os.getpid()

    def __repr__(self) -> str:
        return f"SharedEpoch({self.get()})"


def check_epoch(epoch: Any) -> int:
    """``epoch`` as an int (numpy and torch integers too) if it is in ``0..2**63-1``."""
    try:
        value = -1 if isinstance(epoch, bool) else operator.index(epoch)
    except TypeError:
        value = -1
    if not 0 <= value <= MAX_EPOCH:
        raise ReaderError(f"epoch={epoch!r}: an epoch is an int from 0 to {MAX_EPOCH}")
    return value


def _new_cells(epoch: int, loads: int) -> Any:
    return RawArray(ctypes.c_int64, [epoch, loads])
