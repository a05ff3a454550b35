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
    """Counts what finished shards report and draws a one-line bar with an ETA.

    The line count is known before planning (the input's fast hashing pass counts lines);
    the shard count grows while planning runs (shown as ``12+``).
    """

    total_shards: int
    total_lines: int
    stream: Optional[IO[str]] = None
    interval_s: float = 5.0
    shards: int = 0
    kept: int = 0
    """Shards found finished by an earlier run (not built now)."""
    lines: int = 0
    kept_lines: int = 0
    samples: int = 0
    rejected: int = 0
    planning: bool = True
    phase: str = ""
    """What the build is doing when no shard has finished yet: "planning", "starting Ray"."""
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def planned(self) -> None:
        self.total_shards += 1

    def set_phase(self, phase: str) -> None:
        """Name the current phase; the line is drawn at once (a phase can take seconds)."""
        self.phase = phase
        self._draw(final=False, force=True)

    def planning_done(self) -> None:
        self.planning = False

    def update(self, result: ShardResult, *, kept: bool = False) -> None:
        self.shards += 1
        self.lines += result.shard.lines
        self.samples += result.shard.samples
        self.rejected += result.shard.rejected
        if kept:
            self.kept += 1
            self.kept_lines += result.shard.lines
        self._draw(final=False)

    def finish(self) -> None:
        self.planning = False
        self._draw(final=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> Optional[float]:
        """Seconds left at the rate of the lines built in this run (kept shards excluded)."""
        built = self.lines - self.kept_lines
        left = self.total_lines - self.lines
        if built <= 0 or left <= 0:
            return None
        return self.elapsed * left / built

    def line(self) -> str:
        rate = self.samples / self.elapsed if self.elapsed > 0 else 0.0
        pct = 100.0 * self.lines / self.total_lines if self.total_lines else 100.0
        width = 24
        filled = int(width * min(pct, 100.0) / 100)
        bar = "#" * filled + "-" * (width - filled)
        shards = f"{self.total_shards}+" if self.planning else str(self.total_shards)
        eta = self.eta_s()
        return (
            f"[{bar}] {pct:5.1f}%  shards {self.shards}/{shards}  "
            f"samples {self.samples}  rejects {self.rejected}  {rate:,.0f} samples/s"
            + (f"  ETA {_duration(eta)}" if eta is not None else "")
            + (f"  ({self.phase})" if self.phase else "")
        )

    def _draw(self, *, final: bool, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        tty = self.stream.isatty()
        if not final and not force and not tty and now - self._last < self.interval_s:
            return
        self._last = now
        end = "\n" if final or not tty else ""
        self.stream.write(("\r" if tty else "") + self.line() + end)
        self.stream.flush()


def format_summary(manifest: Manifest, *, elapsed_s: float, executor: str, output: str,
                   resumed_shards: int = 0, validate_only: bool = False,
                   already_complete: bool = False, appended_lines: int = 0,
                   written: bool = True, cpus: Optional[int] = None) -> str:
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
        if written:
            out.append(f"  details: {output.rstrip('/')}/rejects.jsonl")
    if warnings:
        out.append("warnings:")
        out.extend(f"  {name:<22} {count}" for name, count in sorted(warnings.items()))
        if written:
            out.append(f"  details: {output.rstrip('/')}/warnings.jsonl")
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
    hint = small_data_hint(manifest, cpus) if not validate_only else None
    if hint:
        out.append(hint)
    if not written:
        out.append("rejects.jsonl and warnings.jsonl were not written (no output: set, or it holds a "
                   "build); --report FILE writes the rejects")  # fmt: skip
    if output:
        out.append(f"output: {output}")
    return "\n".join(out)


def small_data_hint(manifest: Manifest, cpus: Optional[int]) -> Optional[str]:
    """A note when the train split has fewer than 2 shards per CPU: Ray has little to spread
    and DDP ranks read fixed slices of few shards. Says what to set."""
    info = manifest.splits.get("train")
    if info is None or not cpus or info.samples < 2 or len(info.shards) >= 2 * cpus:
        return None
    per_shard = max(1, -(-info.samples // (2 * cpus)))
    shards = len(info.shards)
    return (f"note: train has {shards} shard{'s' if shards != 1 else ''} for {cpus} CPUs; with few "
            "shards a build has little to run in parallel and training ranks read fixed slices. "
            f"For data this small set shard.max_samples={per_shard} (about {2 * cpus} shards)")


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


def _duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``4000`` -> ``1h06m``."""
    whole = int(seconds + 0.5)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
