"""Gather everything a report shows: manifest figures, a seeded shard scan, reject examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from shardify.manifest import Manifest, read_manifest
from shardify.report.rejects import (
    RejectExample,
    attach_source_lines,
    first_rejects,
    first_warnings,
)
from shardify.report.sampling import SampleView, choose_picks, choose_shards, scan_shards
from shardify.report.stats import ShardRef, SplitScan, SplitSummary, summarize_manifest
from shardify.storage import Location


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOptions:
    """How much a report reads and shows.

    ``max_shards`` bounds the shards streamed (None: all of them); ``samples`` is the size
    of the contact sheet (0: none, and no thumbnails are made); ``seed`` makes both
    selections repeatable; ``rejects_per_reason`` bounds the reject table.
    """

    samples: int = 24
    seed: int = 0
    max_shards: Optional[int] = 4
    rejects_per_reason: int = 5


@dataclass(slots=True, kw_only=True)
class Report:
    """A built output as the text summary and the HTML page show it."""

    where: str
    manifest: Manifest
    options: ReportOptions
    splits: list[SplitSummary]
    scans: dict[str, SplitScan]
    shards_read: list[ShardRef]
    samples: list[SampleView]
    rejects: list[RejectExample]
    warnings: list[RejectExample] = field(default_factory=list)
    input_where: Optional[str] = None
    problems: list[str] = field(default_factory=list)

    @property
    def total_shards(self) -> int:
        return sum(len(s.shards) for s in self.splits)

    @property
    def all_shards_read(self) -> bool:
        return len(self.shards_read) == self.total_shards


def collect_report(
    output: Location,
    options: ReportOptions = ReportOptions(),
    *,
    source: Optional[Location] = None,
) -> Report:
    """Read the manifest, the chosen shards and the first rejects of ``output``.

    ``source`` is the dataset root the output was built from; with it the reject table
    shows each rejected line's raw text.
    """
    manifest = read_manifest(output)
    splits = summarize_manifest(manifest)
    every_shard = [shard for split in splits for shard in split.shards]
    chosen = choose_shards(every_shard, options.max_shards, options.seed)
    picks = choose_picks(chosen, options.samples, options.seed)
    scan = scan_shards(output, chosen, picks)
    rejects = first_rejects(output, splits, options.rejects_per_reason)
    warnings = first_warnings(output, splits, options.rejects_per_reason)
    problems = list(scan.problems)
    if source is not None and (rejects or warnings):
        problems.extend(attach_source_lines(source, splits, rejects + warnings))
    order = {s.name: i for i, s in enumerate(every_shard)}
    samples = sorted(scan.samples, key=lambda v: (order[v.shard], v.key))
    return Report(
        where=output.display("").rstrip("/"), manifest=manifest, options=options, splits=splits,
        scans=scan.scans, shards_read=scan.shards_read, samples=samples, rejects=rejects, warnings=warnings,
        input_where=source.display("") if source is not None else None, problems=problems,
    )  # fmt: skip
