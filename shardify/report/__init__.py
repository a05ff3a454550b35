"""Look at a built output: a text summary and a self-contained HTML report.

``collect_report`` reads the manifest, a seeded, bounded selection of shards and the first
rejects of each reason; ``format_text`` and ``render_html`` show the result.
"""

from __future__ import annotations

from shardify.report.collect import Report, ReportOptions, collect_report
from shardify.report.html import render_html
from shardify.report.text import format_text

__all__ = ["Report", "ReportOptions", "collect_report", "format_text", "render_html"]
