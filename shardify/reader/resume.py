"""What ShardDataset and MixedDataset share to resume: the epoch (shared with DataLoader
workers), checking a saved state against the reader that loads it, and the position a
loaded state continues from."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from shardify.errors import ReaderError
from shardify.reader.epoch import SharedEpoch, check_epoch


def matched_epoch(state: Any, fmt: str, mine: dict[str, Any], keys: Iterable[str], what: str) -> int:
    """The saved state's epoch, once its format and every key of ``keys`` match ``mine``."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ReaderError(f"not a {fmt} reader state: {str(state)[:200]}")
    for key in keys:
        if state.get(key) != mine[key]:
            raise ReaderError(f"the saved {what} state has {key}={state.get(key)!r} but this "
                              f"reader has {key}={mine[key]!r}; resume with the same settings")  # fmt: skip
    return check_epoch(state.get("epoch"))


def resume_base(state: dict[str, Any], epoch: int) -> dict[str, Any]:
    """Where a loaded state continues: its epoch, worker count, consumed counts, rotation."""
    return {"epoch": epoch, "num_workers": state.get("num_workers"),
            "consumed": dict(state.get("consumed") or {}),
            "rotation": int(state.get("rotation") or 0)}  # fmt: skip


class Resumable:
    """The epoch and loaded-state bookkeeping of a reader (mixed into ShardDataset and
    MixedDataset), ``state_dict`` included. The reader sets ``_epoch``, ``_base``, ``_position``, ``_loads_seen``
    and defines ``_state``; ``_state_name`` names its states in messages."""

    _state_name = "reader"
    _epoch: SharedEpoch
    _base: Optional[dict[str, Any]]
    _position: Optional[dict[str, Any]]
    _loads_seen: int

    def _state(self, epoch: int, num_workers: Optional[int], consumed: dict[str, int], *,
               rotation: int = 0) -> dict[str, Any]:  # fmt: skip
        raise NotImplementedError

    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses: a loaded state's while it is pending, else the
        one :meth:`set_epoch` set (shared with DataLoader workers)."""
        return int(self._base["epoch"]) if self._base is not None else self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on (call it every epoch).

        It reaches DataLoader workers, persistent ones included: the epoch is shared memory
        that a worker reads when it starts its next pass (at ``iter(loader)``). An iteration
        already running keeps its epoch. A loaded state that belongs to another epoch is
        dropped, and so is the position of an iteration of another epoch.
        """
        epoch = check_epoch(epoch)
        if self._base is not None and self._base["epoch"] != epoch:
            self._base = None
        if self._position is not None and self._position["epoch"] != epoch:
            self._position = None
        self._epoch.set(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where this reader is in its epoch (JSON-serialisable).

        In the process that iterates (the main process with ``num_workers=0``, or a worker
        under torchdata's ``StatefulDataLoader``) it is exact. For a plain DataLoader with
        workers use ``state_after``. A loaded state not yet iterated is given back as loaded
        (its worker rotation included).
        """
        if self._position is not None:
            p = self._position
            return self._state(p["epoch"], p["num_workers"], {str(p["worker"]): p["count"]})
        if self._base is not None:
            base = self._base
            return self._state(base["epoch"], base["num_workers"], dict(base["consumed"]),
                               rotation=int(base.get("rotation", 0)))  # fmt: skip
        return self._state(self.epoch, None, {})

    def _load(self, state: dict[str, Any], fmt: str, keys: Iterable[str]) -> None:
        """``load_state_dict``: check ``state`` and make it the pending position."""
        mine = self._state(self.epoch, None, {})
        epoch = matched_epoch(state, fmt, mine, keys, self._state_name)
        if self._epoch.is_owner():  # the training loop's process, not a DataLoader worker
            self._epoch.set(epoch)
            self._loads_seen = self._epoch.count_load()
        self._base = resume_base(state, epoch)
        self._position = None

    def _take_base(self, worker: int, parts: int) -> tuple[int, int]:
        """Which part of the rank's span this worker reads and where it starts.

        Without a loaded state: part ``worker`` from 0. With one (used once): its count, and
        parts rotated so that a plain DataLoader, which always starts with worker 0,
        continues its round-robin where the saved run stopped.
        """
        base, self._base = self._base, None
        if base is None or not base["consumed"]:
            return worker, 0
        worker = (worker + int(base.get("rotation", 0))) % parts
        if base["num_workers"] not in (None, parts):
            raise ReaderError(f"the {self._state_name} state was saved with {base['num_workers']} "
                              f"DataLoader worker(s) but is resumed with {parts}; use the same "
                              "num_workers")  # fmt: skip
        if str(worker) not in base["consumed"]:
            raise ReaderError(f"the {self._state_name} state has no count for DataLoader worker {worker}")
        return worker, int(base["consumed"][str(worker)])
