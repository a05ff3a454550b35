"""The self-contained HTML report: one file, no script, no network.

Thumbnails are inlined as ``data:`` URIs, charts are inline SVG from
:mod:`shardify.report.charts`, styles are inlined from :mod:`shardify.report.style`.
Every piece of user text is escaped.
"""

from __future__ import annotations

import datetime
from collections import Counter
from html import escape
from typing import Sequence

from shardify.progress import human_bytes
from shardify.report import charts
from shardify.report.collect import Report
from shardify.report.sheet import contact_sheet, reject_tables
from shardify.report.stats import (
    MODALITIES,
    ShardRef,
    SplitScan,
    SplitSummary,
    percent,
)
from shardify.report.style import CSS, MODALITY_COLOURS, REJECT_COLOUR, SPLIT_COLOURS
from shardify.report.text import MODALITY_NAMES

MAX_COLUMNS = 240
"""With more shards than this, per-shard charts become histograms."""


def render_html(report: Report) -> str:
    """The whole page as one string."""
    colours = {s.name: SPLIT_COLOURS[i % len(SPLIT_COLOURS)] for i, s in enumerate(report.splits)}
    reject_counts: Counter[str] = Counter()
    warning_counts: Counter[str] = Counter()
    for split in report.splits:
        reject_counts.update(split.rejects_by_reason)
        warning_counts.update(split.warnings)
    sheet_note = _sheet_note(report)
    body = [
        _header(report),
        "<main>",
        _tiles(report.splits),
        _splits_table(report, colours),
        "<h2>Charts</h2>",
        _charts(report, colours, reject_counts),
        f'<h2>Samples<span class="sub">{escape(sheet_note)}</span></h2>',
        contact_sheet(report.samples, colours),
        f'<h2>Rejects<span class="sub">first {report.options.rejects_per_reason} per reason</span></h2>',
        reject_tables(report.rejects, dict(reject_counts), report.input_where),
        f'<h2 id="warnings">Warnings<span class="sub">samples kept with a caveat; first '
        f'{report.options.rejects_per_reason} per reason</span></h2>',
        reject_tables(report.warnings, dict(warning_counts), report.input_where, empty="No warning."),
        _problems(report.problems),
        "<footer>made by <code>shardify inspect</code> · "
        f"{escape(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}</footer>",
        "</main>",
    ]
    title = f"shardify · {report.where}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")  # fmt: skip


def _header(report: Report) -> str:
    manifest = report.manifest
    meta = [manifest.format, f"shardify {manifest.shardify_version}",
            f"config {manifest.config_sha256[:12]}"]  # fmt: skip
    if report.input_where:
        meta.append(f"input {report.input_where}")
    return ('<header class="top"><div class="inner"><h1>Dataset report</h1>'
            f'<div class="where">{escape(report.where)}</div>'
            f'<div class="meta">{escape(" · ".join(meta))}</div></div></header>')  # fmt: skip


def _scope(report: Report) -> str:
    """Which shards the figures that need reading shards come from."""
    if report.all_shards_read:
        return "all shards"
    return f"{len(report.shards_read)} of {report.total_shards} shards (seeded draw)"


def _sheet_note(report: Report) -> str:
    return f"{len(report.samples)} drawn at random (seed {report.options.seed}) from {_scope(report)}"


def _tiles(splits: Sequence[SplitSummary]) -> str:
    lines = sum(s.lines for s in splits)
    samples = sum(s.samples for s in splits)
    rejected = sum(s.rejected for s in splits)
    shards = [shard for s in splits for shard in s.shards]
    tiles = [
        ("samples", f"{samples:,}", f"from {lines:,} lines", ""),
        ("rejected", f"{rejected:,}", f"{percent(rejected, lines)} of lines", "bad" if rejected else ""),
        ("shards", f"{len(shards):,}", f"{len(splits)} split" + ("s" if len(splits) != 1 else ""), ""),
        ("total size", human_bytes(sum(s.bytes for s in shards)), "in shards", ""),
        ("images", f"{sum(s.images for s in splits):,}", "stored as members", ""),
        ("video frames", f"{sum(s.frames for s in splits):,}", "sampled and stored", ""),
    ]
    cells = "".join(
        f'<div class="card tile {cls}" data-tile="{escape(label)}"><div class="l">{escape(label)}</div>'
        f'<div class="n">{escape(value)}</div><div class="d">{escape(detail)}</div></div>'
        for label, value, detail, cls in tiles
    )
    return f'<div class="tiles">{cells}</div>'


def _splits_table(report: Report, colours: dict[str, str]) -> str:
    head = ("<tr><th>split</th><th class=\"num\">lines</th><th class=\"num\">samples</th>"
            "<th class=\"num\">rejected</th><th class=\"num\">blank</th><th class=\"num\">shards</th>"
            "<th class=\"num\">size</th><th>modalities</th></tr>")  # fmt: skip
    rows = []
    for split in report.splits:
        scan = report.scans.get(split.name)
        rows.append(
            f'<tr data-split="{escape(split.name)}"><td><span class="badge" '
            f'style="background:{colours[split.name]}">{escape(split.name)}</span></td>'
            f'<td class="num">{split.lines:,}</td><td class="num" data-samples="{split.samples}">'
            f'{split.samples:,}</td><td class="num" data-rejected="{split.rejected}">{split.rejected:,}</td>'
            f'<td class="num">{split.blank:,}</td><td class="num">{len(split.shards):,}</td>'
            f'<td class="num">{human_bytes(sum(s.bytes for s in split.shards))}</td>'
            f"<td>{_mixbar(scan)}</td></tr>"
        )
    legend = "".join(f'<span><i style="background:{MODALITY_COLOURS[m]}"></i>{MODALITY_NAMES[m]}</span>'
                     for m in MODALITIES)  # fmt: skip
    return (f'<div class="card splits"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
            f'</table></div><div class="legend">{legend}<span>· modalities counted in {escape(_scope(report))}</span></div>')  # fmt: skip


def _mixbar(scan: SplitScan | None) -> str:
    if scan is None or not scan.samples:
        return '<span class="muted">not read</span>'
    parts = []
    for m in MODALITIES:
        n = scan.modalities[m]
        if n:
            tip = f"{MODALITY_NAMES[m]}: {n} of {scan.samples} ({percent(n, scan.samples)})"
            parts.append(f'<span style="width:{100 * n / scan.samples:.2f}%;background:{MODALITY_COLOURS[m]}" '
                         f'title="{escape(tip)}" data-modality="{m}" data-count="{n}"></span>')  # fmt: skip
    return f'<div class="mixbar">{"".join(parts)}</div>'


def _chart_box(title: str, note: str, svg: str) -> str:
    return (f'<section class="card chartbox"><h3>{escape(title)}</h3>'
            f'<div class="note">{escape(note)}</div>{svg}</section>')  # fmt: skip


def _charts(report: Report, colours: dict[str, str], reject_counts: Counter[str]) -> str:
    shards = [shard for s in report.splits for shard in s.shards]
    rows = [(reason, float(n), REJECT_COLOUR)
            for reason, n in sorted(reject_counts.items(), key=lambda kv: (-kv[1], kv[0]))]  # fmt: skip
    rejects = (charts.hbar_chart(rows, label="rejects by reason") if rows
               else charts.empty_chart("no line was rejected"))  # fmt: skip
    scans = list(report.scans.values())
    sizes = [p for scan in scans for p in scan.image_sizes]
    frames = [float(n) for scan in scans for n, c in scan.frames_per_video.items() for _ in range(c)]
    scope = _scope(report)
    boxes = [
        _chart_box("Rejects by reason", f"{sum(reject_counts.values()):,} lines, from the manifest", rejects),
        _chart_box("Samples per shard", "every shard, in output order", _per_shard(shards, colours, "samples")),
        _chart_box("Shard size", "bytes per shard, in output order", _per_shard(shards, colours, "bytes")),
        _chart_box("Image sizes", f"width × height of {len(sizes):,} images in {scope}",
                   charts.scatter(sizes, label="image sizes", colour=MODALITY_COLOURS["image"],
                                  x_label="width (px)", y_label="height (px)")),
        _chart_box("Frames per video", f"{len(frames):,} videos in {scope}",
                   charts.histogram(frames, label="frames per video", colour=MODALITY_COLOURS["video"],
                                    x_label="frames stored per video")),
        _chart_box("Text per sample", f"characters of text per sample in {scope}",
                   charts.histogram([float(n) for scan in scans for n in scan.text_chars],
                                    label="text per sample", colour="#16a37a", x_label="characters")),
    ]  # fmt: skip
    return f'<div class="charts">{"".join(boxes)}</div>'


def _per_shard(shards: Sequence[ShardRef], colours: dict[str, str], what: str) -> str:
    """One column per shard (coloured by split), or a histogram when there are too many."""
    in_bytes = what == "bytes"
    fmt: charts.Format = human_bytes if in_bytes else charts.plain
    values = [float(s.bytes if in_bytes else s.samples) for s in shards]
    if len(shards) > MAX_COLUMNS:
        return charts.histogram(values, label=f"{what} per shard", colour=SPLIT_COLOURS[0],
                                x_label=f"{what} per shard ({len(shards):,} shards)", fmt=fmt)  # fmt: skip
    titles = [f"{s.name}: {fmt(s.bytes if in_bytes else s.samples)}" for s in shards]
    ticks = [(i, s.split) for i, s in enumerate(shards) if i == 0 or shards[i - 1].split != s.split]
    return charts.column_chart(values, label=f"{what} per shard", titles=titles,
                               colours=[colours[s.split] for s in shards], x_ticks=ticks, x_label="shards",
                               fmt=fmt, unit=charts.byte_unit(max(values, default=0)) if in_bytes else 1)  # fmt: skip


def _problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return f'<div class="card problems"><strong>Problems met while reading</strong><ul>{items}</ul></div>'
