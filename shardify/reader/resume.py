"""What ShardDataset and MixedDataset share to resume: checking a saved state against the
reader that loads it, and the position it continues from."""

from __future__ import annotations

from typing import Any, Iterable

from shardify.errors import ReaderError
from shardify.reader.epoch import check_epoch


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
