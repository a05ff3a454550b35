"""The first rejects (and warnings) of each reason, with the raw source line when the input
is readable.

``rejects.jsonl`` is streamed and reading stops once every reason the manifest counts has
its examples, so a long reject file costs no more than its first matching lines. Source
lines are read from the dataset root only when one is given (the manifest does not name it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

import orjson

from shardify.errors import StorageError
from shardify.layout import REJECTS_NAME, WARNINGS_NAME
from shardify.report.stats import SplitSummary
from shardify.storage import Location

log = logging.getLogger(__name__)

MAX_SOURCE_CHARS = 2000
"""Raw source lines are cut to this many characters in the report."""


@dataclass(slots=True, kw_only=True)
class RejectExample:
    """One line of rejects.jsonl, plus its raw input line when it could be read."""

    split: str
    line: int
    reason: str
    detail: str
    source: Optional[str] = None


def first_rejects(output: Location, splits: Iterable[SplitSummary], per_reason: int) -> list[RejectExample]:
    """Up to ``per_reason`` examples of every reject reason, in rejects.jsonl order."""
    wanted = {reason for s in splits for reason, n in s.rejects_by_reason.items() if n}
    return _first(output, REJECTS_NAME, wanted, per_reason)


def first_warnings(output: Location, splits: Iterable[SplitSummary], per_reason: int) -> list[RejectExample]:
    """Up to ``per_reason`` examples of every warning, in warnings.jsonl order."""
    wanted = {reason for s in splits for reason, n in s.warnings.items() if n}
    return _first(output, WARNINGS_NAME, wanted, per_reason)


def _first(output: Location, name: str, wanted: set[str], per_reason: int) -> list[RejectExample]:
    if per_reason <= 0 or not wanted:
        return []
    found: dict[str, list[RejectExample]] = defaultdict(list)
    try:
        for _, raw in output.iter_lines(name):
            example = _parse(raw)
            if example is None or len(found[example.reason]) >= per_reason:
                continue
            found[example.reason].append(example)
            if all(len(found[r]) >= per_reason for r in wanted):
                break
    except FileNotFoundError:
        log.warning("%s is missing; no examples of it", output.display(name))
    return [example for reason in sorted(found) for example in found[reason]]


def _parse(raw: bytes) -> Optional[RejectExample]:
    try:
        data = orjson.loads(raw)
        return RejectExample(split=str(data["split"]), line=int(data["line"]),
                             reason=str(data["reason"]), detail=str(data.get("detail", "")))  # fmt: skip
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def attach_source_lines(source: Location, splits: Iterable[SplitSummary], examples: list[RejectExample]) -> list[str]:
    """Fill ``example.source`` from the input's JSONL files; returns problems met."""
    problems: list[str] = []
    files = {s.name: s.source for s in splits}
    for split in sorted({e.split for e in examples}):
        mine = [e for e in examples if e.split == split]
        try:
            lines = _read_lines(source, files.get(split, f"{split}.jsonl"), {e.line for e in mine})
        except (FileNotFoundError, StorageError) as exc:
            problems.append(f"source lines of {split}: cannot read the input: {exc}")
            continue
        for example in mine:
            example.source = lines.get(example.line)
    return problems


def _read_lines(source: Location, name: str, numbers: set[int]) -> dict[int, str]:
    """The 1-based lines ``numbers`` of ``name``, streaming only up to the last one."""
    found: dict[int, str] = {}
    last = max(numbers, default=0)
    for index, (_, raw) in enumerate(source.iter_lines(name), start=1):
        if index in numbers:
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            cut = len(text) > MAX_SOURCE_CHARS
            found[index] = text[:MAX_SOURCE_CHARS] + (" …" if cut else "")
        if index >= last:
            break
    return found
