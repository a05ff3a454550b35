"""Build progress on stderr and the final summary table.

On a terminal the progress line redraws in place; elsewhere (CI logs, ``ray job``) it is
logged at most every few seconds so logs stay short.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from shardify.manifest import Manifest, ShardResult


@dataclass(slots=True)
class Progress:
    """Counts what finished shards report and draws a one-line bar."""

    total_shards: int
    total_lines: int
    stream: Optional[IO[str]] = None
    interval_s: float = 5.0
    shards: int = 0
    lines: int = 0
    samples: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def update(self, result: ShardResult) -> None:
        self.shards += 1
        self.lines += result.shard.lines
        self.samples += result.shard.samples
        self.rejected += result.shard.rejected
        self._draw(final=False)

    def finish(self) -> None:
        self._draw(final=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        rate = self.samples / self.elapsed if self.elapsed > 0 else 0.0
        pct = 100.0 * self.lines / self.total_lines if self.total_lines else 100.0
        width = 24
        filled = int(width * pct / 100)
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"[{bar}] {pct:5.1f}%  shards {self.shards}/{self.total_shards}  "
            f"samples {self.samples}  rejects {self.rejected}  {rate:,.0f} samples/s"
        )

    def _draw(self, *, final: bool) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        tty = self.stream.isatty()
        if not final and not tty and now - self._last < self.interval_s:
            return
        self._last = now
        end = "\n" if final or not tty else ""
        self.stream.write(("\r" if tty else "") + self.line() + end)
        self.stream.flush()


def format_summary(manifest: Manifest, *, elapsed_s: float, executor: str, output: str,
                   resumed_shards: int = 0, validate_only: bool = False,
                   already_complete: bool = False, appended_lines: int = 0) -> str:
    """The table printed after a build (or validate)."""
    out = [_split_table(manifest, with_shards=not validate_only)]
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for info in manifest.splits.values():
        reasons.update(info.rejects_by_reason)
        warnings.update(info.warnings)
    if reasons:
        out.append("rejects by reason:")
        out.extend(f"  {reason:<22} {count}" for reason, count in sorted(reasons.items()))
        out.append(f"  details: {output.rstrip('/')}/rejects.jsonl")
    if warnings:
        out.append("warnings:")
        out.extend(f"  {name:<22} {count}" for name, count in sorted(warnings.items()))
    if already_complete:
        out.append("already complete: this output holds a finished build of this config; "
                   "nothing to do (--overwrite rebuilds it)")
    else:
        total = sum(info.samples for info in manifest.splits.values())
        rate = total / elapsed_s if elapsed_s > 0 else 0.0
        what = "validated" if validate_only else "built"
        out.append(f"{what} {total} samples in {elapsed_s:.1f} s ({rate:,.0f} samples/s) "
                   f"with {executor}")
    if appended_lines:
        out.append(f"incremental: {appended_lines} line(s) appended since the last build; "
                   f"{resumed_shards} shard(s) kept, the rest built")  # fmt: skip
    elif resumed_shards:
        out.append(f"resumed: {resumed_shards} shard(s) kept from an earlier run")
    out.append(f"output: {output}")
    return "\n".join(out)


def _split_table(manifest: Manifest, *, with_shards: bool) -> str:
    head: tuple[str, ...] = ("split", "lines", "samples", "rejected", "blank")
    rows = []
    for split, info in manifest.splits.items():
        row: tuple[Any, ...] = (split, info.lines, info.samples, info.rejected, info.blank)
        if with_shards:
            row += (len(info.shards), human_bytes(sum(s.bytes for s in info.shards)))
        rows.append(row)
    if with_shards:
        head += ("shards", "bytes")
    return _table(head, rows)


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in head)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(value: float) -> str:
    """``1536`` -> ``1.5 KiB``: sizes as people read them (binary units, everywhere)."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
