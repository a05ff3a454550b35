"""Small inline SVG charts drawn by hand: no script, no fonts, no network.

Every chart is a ``<svg>`` string with a ``viewBox`` (it scales to its box) and a
``<title>`` on each mark, so hovering shows the exact figure. All text is escaped here.
"""

from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

WIDTH = 560
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 14, 40
AXIS = "#9aa3b2"
GRID = "#e7eaf0"
MAX_BAR = 56
INK = "#5b6475"

Format = Callable[[float], str]


def plain(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def nice_step(span: float, ticks: int = 4) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(span / ticks))
    steps = [float(factor * power) for factor in (1, 2, 5, 10)]
    return min(steps, key=lambda step: abs(span / step - ticks))


def _svg(body: list[str], height: int, label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
            + "".join(body) + "</svg>")  # fmt: skip


def _text(x: float, y: float, text: str, anchor: str = "middle", cls: str = "t") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">{escape(text)}</text>'


def empty_chart(message: str) -> str:
    """A placeholder with the same shape as a chart, saying why there is nothing to draw."""
    return _svg([_text(WIDTH / 2, 60, message, cls="t muted")], 110, message)


def hbar_chart(rows: Sequence[tuple[str, float, str]], *, label: str, fmt: Format = plain) -> str:
    """Horizontal bars, one per ``(name, value, colour)``; the longest fills the width."""
    if not rows:
        return empty_chart("nothing to show")
    row_h, name_w = 30, 190
    height = TOP + row_h * len(rows) + 6
    top = max(value for _, value, _ in rows) or 1
    body = []
    for i, (name, value, colour) in enumerate(rows):
        y = TOP + i * row_h
        width = max(2.0, (WIDTH - name_w - 70) * value / top)
        body.append(_text(name_w - 10, y + 18, name, anchor="end", cls="t name"))
        body.append(f'<rect x="{name_w}" y="{y + 5}" width="{width:.1f}" height="{row_h - 10}" '
                    f'rx="4" fill="{colour}"><title>{escape(f"{name}: {fmt(value)}")}</title></rect>')  # fmt: skip
        body.append(_text(name_w + width + 8, y + 19, fmt(value), anchor="start", cls="t value"))
    return _svg(body, height, label)


def _y_axis(top_value: float, fmt: Format, plot_h: float, unit: float = 1,
            integral: bool = False) -> tuple[list[str], float]:  # fmt: skip
    """Grid lines and labels of a value axis starting at 0; returns them and the axis top.
    Ticks are round multiples of ``unit`` (e.g. 1024**2 for an axis in MiB); whole numbers
    when the values are counts (``integral``)."""
    step = nice_step(top_value / unit) * unit
    if integral:
        step = max(1.0, round(step))
    axis_top = step * max(1, math.ceil(top_value / step))
    body = []
    tick = 0.0
    while tick <= axis_top + step / 2:
        y = TOP + plot_h * (1 - tick / axis_top)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(LEFT - 6, y + 4, fmt(tick), anchor="end"))
        tick += step
    return body, axis_top


def column_chart(
    values: Sequence[float],
    *,
    label: str,
    colours: Sequence[str],
    titles: Sequence[str],
    x_ticks: Sequence[tuple[int, str]] = (),
    x_label: str = "",
    fmt: Format = plain,
    unit: float = 1,
) -> str:
    """Vertical columns from a zero baseline; ``titles`` describe each column on hover."""
    if not values:
        return empty_chart("nothing to show")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    integral = all(float(v).is_integer() for v in values)
    body, axis_top = _y_axis(max(values) or 1, fmt, plot_h, unit, integral)
    slot = plot_w / len(values)
    bar = min(slot - (min(slot * 0.18, 4) if slot > 3 else 0), MAX_BAR)
    for i, value in enumerate(values):
        h = plot_h * value / axis_top
        x = LEFT + i * slot + (slot - bar) / 2
        body.append(f'<rect x="{x:.2f}" y="{TOP + plot_h - h:.2f}" width="{max(bar, 0.6):.2f}" '
                    f'height="{h:.2f}" fill="{colours[i % len(colours)]}"><title>{escape(titles[i])}</title></rect>')  # fmt: skip
    base = TOP + plot_h
    body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}" stroke="{AXIS}"/>')
    for i, text in x_ticks:
        body.append(_text(LEFT + (i + 0.5) * slot, base + 15, text))
    if x_label:
        body.append(_text(LEFT + plot_w / 2, HEIGHT - 6, x_label, cls="t muted"))
    return _svg(body, HEIGHT, label)


def histogram(
    values: Sequence[float],
    *,
    label: str,
    colour: str,
    x_label: str,
    fmt: Format = plain,
    bins: int = 20,
) -> str:
    """Counts of ``values`` in equal-width bins (one bin per value when there are few)."""
    if not values:
        return empty_chart("nothing to show")
    low, high = min(values), max(values)
    distinct = sorted(set(values))
    if len(distinct) <= bins and all(float(v).is_integer() for v in distinct):
        counts = [sum(1 for v in values if v == d) for d in distinct]
        ticks = _sparse_ticks([fmt(d) for d in distinct])
        titles = [f"{fmt(d)}: {c}" for d, c in zip(distinct, counts)]
        return column_chart(counts, label=label, colours=[colour], titles=titles,
                            x_ticks=ticks, x_label=x_label)  # fmt: skip
    width = (high - low) / bins or 1
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    edges = [low + i * width for i in range(bins + 1)]
    titles = [f"{fmt(edges[i])} - {fmt(edges[i + 1])}: {c}" for i, c in enumerate(counts)]
    ticks = [(0, fmt(low)), (bins // 2, fmt(edges[bins // 2])), (bins - 1, fmt(high))]
    return column_chart(counts, label=label, colours=[colour], titles=titles,
                        x_ticks=ticks, x_label=x_label)  # fmt: skip


def byte_unit(value: float) -> float:
    """The power of 1024 to tick a byte axis in, so ticks fall on round KiB, MiB, GiB."""
    unit = 1.0
    while value / unit >= 1024 and unit < 1024**4:
        unit *= 1024
    return unit


def _sparse_ticks(labels: Sequence[str], limit: int = 10) -> list[tuple[int, str]]:
    every = max(1, math.ceil(len(labels) / limit))
    return [(i, text) for i, text in enumerate(labels) if i % every == 0]


def scatter(points: Sequence[tuple[float, float]], *, label: str, colour: str, x_label: str, y_label: str) -> str:
    """Points on linear axes from zero (e.g. image width against height)."""
    if not points:
        return empty_chart("nothing to show")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body, y_top = _y_axis(max(y for _, y in points) or 1, plain, plot_h)
    x_step = nice_step(max(x for x, _ in points) or 1)
    x_top = x_step * max(1, math.ceil(max(x for x, _ in points) / x_step))
    tick = 0.0
    while tick <= x_top + x_step / 2:
        body.append(_text(LEFT + plot_w * tick / x_top, TOP + plot_h + 15, plain(tick)))
        tick += x_step
    seen: dict[tuple[float, float], int] = {}
    for point in points:
        seen[point] = seen.get(point, 0) + 1
    for (x, y), n in seen.items():
        cx, cy = LEFT + plot_w * x / x_top, TOP + plot_h * (1 - y / y_top)
        radius = min(9.0, 3.0 + math.log2(n))
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{colour}" fill-opacity="0.55">'
                    f'<title>{escape(f"{plain(x)} x {plain(y)}: {n}")}</title></circle>')  # fmt: skip
    body.append(_text(LEFT + plot_w / 2, HEIGHT - 6, x_label, cls="t muted"))
    body.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" class="t muted" '
                f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')  # fmt: skip
    return _svg(body, HEIGHT, label)
