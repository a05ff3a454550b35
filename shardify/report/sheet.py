"""HTML of the contact sheet (picked samples with thumbnails and conversation) and of the
reject table. Every piece of user text goes through :func:`html.escape`."""

from __future__ import annotations

from html import escape
from itertools import groupby
from typing import Any, Optional, Sequence

from shardify.report.rejects import RejectExample
from shardify.report.sampling import SampleView, Thumb
from shardify.report.style import MODALITY_COLOURS

IMAGE_HEIGHT = 120
FRAME_HEIGHT = 66
MAX_DISPLAY_WIDTH = 360
"""Display sizes (CSS pixels) of image and frame thumbnails on the contact sheet."""
MAX_TEXT_CHARS = 4000
"""Longer text items are cut (the sample's full text is in its shard)."""


def contact_sheet(samples: Sequence[SampleView], split_colours: dict[str, str]) -> str:
    if not samples:
        return '<p class="muted">No samples to show.</p>'
    cards = "".join(_card(view, split_colours.get(view.split, "#687185")) for view in samples)
    return f'<div class="sheet">{cards}</div>'


def _card(view: SampleView, split_colour: str) -> str:
    found = view.doc.get("source")
    source: dict[str, Any] = found if isinstance(found, dict) else {}
    where = f"{source.get('file', '?')}:{source.get('line', '?')} · {view.shard}"
    return (
        f'<article class="card sample" id="sample-{escape(view.split)}-{escape(view.key)}" '
        f'data-key="{escape(view.key)}" data-split="{escape(view.split)}">'
        f'<header><span class="key">{escape(view.key)}</span>'
        f'<span class="badge" style="background:{split_colour}">{escape(view.split)}</span>'
        f'<span class="badge" style="background:{MODALITY_COLOURS[view.modality]}">'
        f'{escape(_modality_label(view))}</span>'
        f'<span class="src">{escape(where)}</span></header>'
        f"{_media(view)}{_chat(view.doc.get('messages'))}</article>"
    )


def _modality_label(view: SampleView) -> str:
    if view.modality == "video":
        frames = len((view.doc.get("video") or {}).get("frames") or [])
        return f"video · {frames} frames"
    if view.modality == "image":
        count = len(view.doc.get("images") or [])
        return f"{count} image" + ("s" if count != 1 else "")
    return "text only"


def _media(view: SampleView) -> str:
    if not view.thumbs:
        return ""
    video = view.doc.get("video")
    is_video = isinstance(video, dict)
    paths = view.doc.get("image_paths") or []
    figures = []
    for i, thumb in enumerate(view.thumbs):
        title = "" if is_video or i >= len(paths) else str(paths[i])
        figures.append(_figure(thumb, title, show_size=not is_video))
    if view.hidden_media:
        figures.append(f'<span class="more">+{view.hidden_media} more</span>')
    classes = "media frames" if is_video else "media"
    info = _video_info(video) if isinstance(video, dict) else ""
    return f'<div class="{classes}">{"".join(figures)}</div>{info}'


def _figure(thumb: Thumb, title: str, *, show_size: bool) -> str:
    caption = thumb.label + (f" · {thumb.width}×{thumb.height}" if show_size and thumb.width else "")
    if not thumb.uri:
        return f'<figure><div class="broken">{escape(thumb.label)}</div></figure>'
    width, height = _display_size(thumb, IMAGE_HEIGHT if show_size else FRAME_HEIGHT)
    return (f'<figure><img src="{thumb.uri}" alt="{escape(thumb.label)}" title="{escape(title)}" '
            f'width="{width}" height="{height}"><figcaption>{escape(caption)}</figcaption></figure>')  # fmt: skip


def _display_size(thumb: Thumb, height: int) -> tuple[int, int]:
    """Thumbnails share one row height; very wide ones are capped in width instead."""
    aspect = thumb.thumb_width / max(1, thumb.thumb_height)
    width = max(1, round(height * aspect))
    if width > MAX_DISPLAY_WIDTH:
        return MAX_DISPLAY_WIDTH, max(1, round(MAX_DISPLAY_WIDTH / aspect))
    return width, height


def _video_info(video: dict[str, Any]) -> str:
    parts = [str(video.get("path", "?"))]
    if video.get("width") and video.get("height"):
        parts.append(f"{video['width']}×{video['height']}")
    if video.get("fps"):
        parts.append(f"{float(video['fps']):g} fps")
    indices = video.get("frame_indices") or []
    parts.append(f"{len(indices)} of {video.get('total_frames', '?')} frames")
    if len(set(indices)) < len(indices):
        parts.append(f"only {len(set(indices))} distinct")
    parts.append(f"sampling {video.get('sampling', '?')}")
    return f'<div class="mediainfo">{escape(" · ".join(parts))}</div>'


def _chat(messages: Any) -> str:
    """Each message as a bubble; image and video items appear as chips where they stand."""
    bubbles = []
    images = 0
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "?"))
        parts = []
        for item in message.get("content") or []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "text":
                parts.append(escape(_cut(str(item.get("text") or ""))))
            elif kind == "image":
                parts.append(f'<span class="chip">image {images}</span>')
                images += 1
            else:
                parts.append(f'<span class="chip">{escape(str(kind))}</span>')
        role_class = role if role in ("user", "assistant") else "other"
        bubbles.append(f'<div class="msg {role_class}"><div class="role">{escape(role)}</div>'
                       f'<div class="body">{" ".join(parts)}</div></div>')  # fmt: skip
    return f'<div class="chat">{"".join(bubbles)}</div>'


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS] + f" … ({len(text) - MAX_TEXT_CHARS:,} more characters)"


def reject_tables(examples: Sequence[RejectExample], counts: dict[str, int], input_where: Optional[str],
                  *, empty: str = "No line was rejected.") -> str:  # fmt: skip
    """One table per reason (of rejects, or of warnings): its total (from the manifest) and
    its first examples."""
    if not counts:
        return f'<p class="muted">{escape(empty)}</p>'
    note = ("" if input_where else
            '<p class="muted">Source lines are shown when the input is given: '
            "<code>shardify inspect URL --input DATASET_ROOT</code>.</p>")  # fmt: skip
    by_reason = {reason: list(group) for reason, group in groupby(examples, key=lambda e: e.reason)}
    sections = [_reason_table(reason, counts[reason], by_reason.get(reason, []))
                for reason in sorted(counts, key=lambda r: (-counts[r], r))]  # fmt: skip
    return note + "".join(sections)


def _reason_table(reason: str, count: int, examples: list[RejectExample]) -> str:
    shown = len(examples)
    more = f'<span class="more">first {shown} shown</span>' if shown < count else ""
    rows = "".join(
        f'<tr data-reason="{escape(reason)}"><td>{escape(e.split)}</td>'
        f'<td class="line">{e.line}</td><td class="detail">{escape(e.detail)}</td>'
        f"<td>{_raw(e.source)}</td></tr>"
        for e in examples
    )
    return (f'<section class="card reason" data-reason="{escape(reason)}" data-count="{count}">'
            f'<h3><code>{escape(reason)}</code><span class="count">{count:,}</span>{more}</h3>'
            '<table><colgroup><col class="split"><col class="line"><col class="detail"><col></colgroup>'
            "<thead><tr><th>split</th><th>line</th><th>detail</th><th>source line</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></section>")  # fmt: skip


def _raw(source: Optional[str]) -> str:
    if source is None:
        return '<span class="muted">-</span>'
    if not source.strip():
        return '<span class="muted">(empty line)</span>'
    return f'<pre class="raw">{escape(source)}</pre>'
