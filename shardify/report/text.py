"""The plain-text summary that ``shardify inspect URL`` prints."""

from __future__ import annotations

from typing import Callable

from shardify.progress import human_bytes
from shardify.report.collect import Report
from shardify.report.stats import (
    MODALITIES,
    Distribution,
    SplitScan,
    SplitSummary,
    percent,
)

MODALITY_NAMES = {"image": "image", "video": "video", "text": "text-only"}


def format_text(report: Report) -> str:
    """A few lines per split: counts, shard sizes, media, modalities, rejects and warnings."""
    manifest = report.manifest
    config = manifest.config_sha256[:12]
    lines = [f"{report.where}  ({manifest.format}, shardify {manifest.shardify_version}, "
             f"config {config})"]  # fmt: skip
    for split in report.splits:
        lines.extend(_split_lines(split, report.scans.get(split.name)))
    read = len(report.shards_read)
    scope = "all shards" if report.all_shards_read else f"{read} of {report.total_shards} shards"
    lines.append(f"(modalities, frames and image sizes from {scope}; seed {report.options.seed})")
    lines.extend(f"warning: {problem}" for problem in report.problems)
    return "\n".join(lines)


def _split_lines(split: SplitSummary, scan: SplitScan | None) -> list[str]:
    total_bytes = sum(s.bytes for s in split.shards)
    lines = [
        f"{split.name}: {split.lines} lines -> {split.samples} samples, {split.rejected} rejected, "
        f"{split.blank} blank; {len(split.shards)} shards, {human_bytes(total_bytes)}",
        _row("samples per shard", _dist(split.shard_samples, _num)),
        _row("shard bytes", _dist(split.shard_bytes, human_bytes)),
        _row("media", f"{split.images} images, {split.frames} video frames"),
    ]
    if scan is not None and scan.samples:
        lines.extend(_scan_lines(scan))
    if split.rejects_by_reason:
        reasons = ", ".join(f"{r} {n}" for r, n in split.rejects_by_reason.items())
        lines.append(_row("rejected", reasons))
    if split.warnings:
        lines.append(_row("warnings", ", ".join(f"{w} {n}" for w, n in split.warnings.items())))
    return lines


def _scan_lines(scan: SplitScan) -> list[str]:
    kinds = ", ".join(
        f"{MODALITY_NAMES[m]} {scan.modalities[m]} ({percent(scan.modalities[m], scan.samples)})"
        for m in MODALITIES
    )
    lines = [_row("modalities", f"{kinds}  [{_count(scan.samples, 'sample')} in {_count(scan.shards_read, 'shard')}]")]
    if scan.frames_per_video:
        lines.append(_row("frames per video", _counts(scan.frames_per_video)))
    if scan.images_per_sample:
        lines.append(_row("images per sample", _counts(scan.images_per_sample)))
    if scan.image_sizes:
        widths = Distribution.of([w for w, _ in scan.image_sizes])
        heights = Distribution.of([h for _, h in scan.image_sizes])
        lines.append(_row("image width", _dist(widths, _num)))
        lines.append(_row("image height", _dist(heights, _num)))
        formats = ", ".join(f"{f} {n}" for f, n in scan.image_formats.most_common())
        lines.append(_row("image formats", formats))
    return lines


def _row(label: str, value: str) -> str:
    return f"  {label:<18} {value}"


def _dist(dist: Distribution, show: Callable[[float], str]) -> str:
    return f"min {show(dist.minimum)}  median {show(dist.median)}  max {show(dist.maximum)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _counts(counter: dict[int, int]) -> str:
    """``{8: 4, 16: 1}`` -> ``8 x4, 16 x1`` (at most 8 values, the rest summarised)."""
    items = sorted(counter.items())
    shown = ", ".join(f"{value} x{count}" for value, count in items[:8])
    return shown + (f", ... ({len(items) - 8} more values)" if len(items) > 8 else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
