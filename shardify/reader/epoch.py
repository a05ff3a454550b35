"""The epoch of a ShardDataset, shared with the dataset's DataLoader worker copies.

A DataLoader worker iterates its own copy of the dataset. With ``persistent_workers=True``
that copy lives for every epoch, so an epoch set as a plain attribute in the main process
never reached it (every epoch repeated epoch 0's order). :class:`SharedEpoch` keeps the
epoch in one word of shared memory (``multiprocessing.RawValue``): forked workers inherit
the mapping, spawn and forkserver workers receive it while they are being started (the
only time multiprocessing can hand shared memory over). Any other copy (``pickle``,
``copy.deepcopy``, another framework's serialisation) gets an independent cell holding the
current value, so the dataset stays picklable everywhere.

No lock is needed: one process writes (the training loop's ``set_epoch``) and a worker
reads only when torch tells it to start a pass. Torch's persistent workers call
``iter(dataset)`` again when they receive ``_ResumeIteration``, which the main process sends
from ``iter(loader)`` after ``set_epoch`` has written the word; the message travels through
a pipe (system calls), which orders the write before the read.
"""

from __future__ import annotations

import ctypes
import operator
from multiprocessing import RawValue
from multiprocessing.context import get_spawning_popen
from typing import Any

from shardify.errors import ReaderError

MAX_EPOCH = 2**63 - 1


class SharedEpoch:
    """An epoch number visible to every process started from the one that made it."""

    __slots__ = ("_cell",)

    def __init__(self, epoch: int = 0) -> None:
        self._cell: Any = _new_cell(check_epoch(epoch))

    def get(self) -> int:
        return int(self._cell.value)

    def set(self, epoch: int) -> None:
        self._cell.value = check_epoch(epoch)

    def __getstate__(self) -> dict[str, Any]:
        if get_spawning_popen() is not None:  # a worker being started: share the cell
            return {"cell": self._cell}
        return {"epoch": self.get()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._cell = state["cell"] if "cell" in state else _new_cell(int(state["epoch"]))

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


def _new_cell(epoch: int) -> Any:
    return RawValue(ctypes.c_int64, epoch)
