"""The report's stylesheet (inlined into the page; system fonts only, nothing fetched)."""

from __future__ import annotations

SPLIT_COLOURS = ("#4f6df5", "#f08c2e", "#16a37a", "#c2417a", "#7e57c2", "#0e9bb5")
MODALITY_COLOURS = {"image": "#4f6df5", "video": "#c2417a", "text": "#9aa3b2"}
REJECT_COLOUR = "#e5484d"

CSS = """
:root {
  --bg: #f5f6f9; --card: #ffffff; --ink: #1d2433; --muted: #687185; --line: #e3e6ed;
  --accent: #4f6df5; --bad: #e5484d; --user: #eef2ff; --assistant: #ecfdf5;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 0 28px 48px; }
header.top { background: linear-gradient(120deg, #1d2433 0%, #2c3a66 60%, #4f6df5 100%);
  color: #fff; padding: 28px 0 30px; margin-bottom: 26px; }
header.top .inner { max-width: 1320px; margin: 0 auto; padding: 0 28px; }
header.top h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; letter-spacing: -0.01em; }
header.top .where { font-family: var(--mono); font-size: 14px; opacity: 0.92; word-break: break-all; }
header.top .meta { margin-top: 8px; font-size: 12.5px; opacity: 0.75; }
h2 { font-size: 18px; margin: 34px 0 12px; letter-spacing: -0.01em; }
h2 .sub { font-weight: 400; color: var(--muted); font-size: 13.5px; margin-left: 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  box-shadow: 0 1px 2px rgba(20, 30, 60, 0.04); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(165px, 1fr)); gap: 12px; }
.tile { padding: 14px 16px; }
.tile .n { font-size: 26px; font-weight: 650; letter-spacing: -0.02em; }
.tile .l { color: var(--muted); font-size: 12.5px; text-transform: uppercase; letter-spacing: 0.04em; }
.tile .d { color: var(--muted); font-size: 12.5px; margin-top: 2px; }
.tile.bad .n { color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
.reason table { table-layout: fixed; }
.reason col.split { width: 90px; } .reason col.line { width: 80px; } .reason col.detail { width: 38%; }
th, td { text-align: left; padding: 7px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: none; }
.splits { margin-top: 12px; overflow-x: auto; }
.mixbar { display: flex; height: 12px; border-radius: 6px; overflow: hidden; min-width: 140px; background: var(--line); }
.mixbar span { display: block; height: 100%; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12.5px; color: var(--muted); margin: 6px 0 0; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 5px; vertical-align: -1px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
.chartbox { padding: 14px 16px 10px; }
.chartbox h3 { margin: 0; font-size: 14.5px; }
.chartbox .note { color: var(--muted); font-size: 12.5px; margin: 1px 0 6px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .t { font-size: 11px; fill: var(--muted); }
svg.chart .t.name { font-size: 12px; fill: var(--ink); font-family: var(--mono); }
svg.chart .t.value { font-size: 12px; fill: var(--ink); font-weight: 600; }
svg.chart .t.muted { font-size: 11.5px; }
svg.chart rect:hover, svg.chart circle:hover { opacity: 0.75; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(410px, 1fr)); gap: 16px; align-items: start; }
.sample { padding: 0; overflow: hidden; display: flex; flex-direction: column; }
.sample > header { display: flex; align-items: center; gap: 8px; flex-wrap: wrap;
  padding: 10px 14px; border-bottom: 1px solid var(--line); background: #fafbfd; }
.key { font-family: var(--mono); font-weight: 600; font-size: 13px; }
.src { margin-left: auto; color: var(--muted); font-size: 12px; font-family: var(--mono); }
.badge { font-size: 11.5px; padding: 1px 8px; border-radius: 999px; color: #fff; font-weight: 600; }
.badge.light { background: #eef0f5; color: var(--ink); font-weight: 500; }
.media { display: flex; gap: 8px; flex-wrap: wrap; padding: 12px 14px 4px; }
.media figure { margin: 0; width: min-content; }
.media img { display: block; border-radius: 6px; background: #eef0f5;
  box-shadow: 0 0 0 1px rgba(0, 0, 0, 0.06); }
.media.frames { gap: 4px; }
.media.frames img { border-radius: 4px; }
.media figcaption { font-size: 10.5px; line-height: 1.3; color: var(--muted); margin-top: 3px; font-family: var(--mono); }
.media .more { align-self: center; color: var(--muted); font-size: 12px; padding: 0 6px; }
.broken { width: 96px; height: 72px; display: flex; align-items: center; justify-content: center;
  border: 1px dashed var(--bad); color: var(--bad); border-radius: 6px; font-size: 11px; text-align: center; }
.mediainfo { padding: 0 14px; color: var(--muted); font-size: 12px; }
.chat { padding: 10px 14px 14px; display: flex; flex-direction: column; gap: 6px; max-height: 22em; overflow: auto; }
.msg { border-radius: 10px; padding: 7px 11px; }
.msg.user { background: var(--user); margin-right: 28px; }
.msg.assistant { background: var(--assistant); margin-left: 28px; }
.msg .role { font-size: 11px; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); font-weight: 600; }
.msg .body { white-space: pre-wrap; word-break: break-word; }
.chip { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 5px; background: #fff;
  border: 1px solid var(--line); color: var(--muted); font-family: var(--mono); margin: 1px 3px 1px 0; }
.reason { margin-top: 14px; overflow: hidden; }
.reason > h3 { margin: 0; padding: 11px 14px; font-size: 14px; display: flex; align-items: center; gap: 10px;
  border-bottom: 1px solid var(--line); background: #fff7f7; }
.reason > h3 code { font-family: var(--mono); color: var(--bad); }
.count { background: var(--bad); color: #fff; border-radius: 999px; padding: 0 9px; font-size: 12px; }
.reason .more { color: var(--muted); font-weight: 400; font-size: 12.5px; }
td.line { font-family: var(--mono); white-space: nowrap; }
td.detail { overflow-wrap: anywhere; }
pre.raw { margin: 0; font-family: var(--mono); font-size: 12px; white-space: pre-wrap; word-break: break-all;
  background: #f7f8fb; border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; max-height: 9em; overflow: auto; }
.muted { color: var(--muted); }
.problems { border-left: 4px solid #f0b429; padding: 10px 14px; margin-top: 14px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; text-align: center; }
"""
