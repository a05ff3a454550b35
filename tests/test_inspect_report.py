"""Pure parts of the inspect report: seeded shard and sample draws, statistics, SVG charts."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from hypothesis import given
from hypothesis import strategies as st

from shardify.manifest import Manifest
from shardify.progress import human_bytes
from shardify.report import ReportOptions, render_html
from shardify.report.charts import (
    byte_unit,
    column_chart,
    hbar_chart,
    histogram,
    nice_step,
    scatter,
)
from shardify.report.collect import Report
from shardify.report.html import MAX_COLUMNS
from shardify.report.sampling import _spread, choose_picks, choose_shards
from shardify.report.stats import Distribution, ShardRef, SplitScan, summarize_manifest

SHARD_COUNTS = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30)


def refs(counts: list[int], split: str = "train") -> list[ShardRef]:
    return [ShardRef(split=split, index=i, name=f"{split}-{i:06d}.tar", samples=n, bytes=n * 1000)
            for i, n in enumerate(counts)]  # fmt: skip


@given(SHARD_COUNTS, st.integers(min_value=0, max_value=80), st.integers(min_value=0, max_value=9))
def test_picks_are_distinct_real_samples_and_repeatable(counts: list[int], want: int, seed: int) -> None:
    shards = refs(counts)
    picks = choose_picks(shards, want, seed)
    sizes = {s.name: s.samples for s in shards}
    assert len(picks) == min(want, sum(counts))
    assert all(0 <= ordinal < sizes[name] for name, ordinal in picks)
    assert picks == choose_picks(shards, want, seed)


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=5),
       st.integers(min_value=1, max_value=25), st.integers(min_value=0, max_value=9))  # fmt: skip
def test_shard_draw_is_bounded_ordered_and_covers_splits(train: int, test: int, limit: int, seed: int) -> None:
    shards = refs([3] * train) + refs([2] * test, split="test")
    chosen = choose_shards(shards, limit, seed)
    assert len(chosen) == min(limit, len(shards))
    assert len({s.name for s in chosen}) == len(chosen)
    assert chosen == sorted(chosen, key=shards.index)  # output order: reads go forward
    if limit >= 2:
        assert {s.split for s in chosen} == {"train", "test"}
    assert chosen == choose_shards(shards, limit, seed)
    assert choose_shards(shards, None, seed) == shards


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=2, max_value=12))
def test_spread_keeps_first_and_last(total: int, limit: int) -> None:
    picked = _spread(total, limit)
    assert len(picked) <= limit and picked == sorted(set(picked))
    if total:
        assert picked[0] == 0 and picked[-1] == total - 1
        assert len(picked) == min(total, limit) or total > limit


@given(st.floats(min_value=1e-3, max_value=1e12))
def test_nice_step_is_round_and_gives_a_few_ticks(span: float) -> None:
    step = nice_step(span)
    mantissa = step / 10 ** int(f"{step:e}".split("e")[1])
    assert round(mantissa, 6) in (1, 2, 5, 10)
    assert 2 <= span / step <= 8


def test_distribution_and_units() -> None:
    dist = Distribution.of([5, 1, 3, 2, 4])
    assert (dist.minimum, dist.median, dist.maximum, dist.total, dist.count) == (1, 3, 5, 15, 5)
    assert Distribution.of([]).count == 0
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 1024**3) == "3.0 GiB"
    assert byte_unit(900) == 1 and byte_unit(5 * 1024**2) == 1024**2


def test_split_scan_counts_modalities_and_keeps_a_bounded_size_sample() -> None:
    scan = SplitScan("train")
    assert scan.add_sample({"messages": [], "images": ["image0.jpg"]}) == "image"
    assert scan.add_sample({"messages": [], "video": {"frames": ["frame0000.jpg"] * 8}}) == "video"
    assert scan.add_sample({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}) == "text"
    assert scan.modalities == {"image": 1, "video": 1, "text": 1}
    assert scan.frames_per_video == {8: 1} and scan.text_chars == [0, 0, 2]
    for i in range(10_000):
        scan.add_image("jpg", (i, i))
    assert scan.images_seen == 10_000 and len(scan.image_sizes) == 4000


def svg_ok(svg: str) -> ElementTree.Element:
    """The chart is well-formed XML (an unescaped label would break it)."""
    return ElementTree.fromstring(svg)


def test_charts_escape_labels_and_draw_every_value() -> None:
    root = svg_ok(hbar_chart([("<bad & reason>", 3, "#f00"), ("ok", 1, "#0f0")], label="x"))
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) == 2
    root = svg_ok(column_chart([1, 2, 0, 4], label="c", colours=["#00f"], titles=list("abcd")))
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) == 4
    root = svg_ok(histogram([float(v) for v in range(1000)], label="h", colour="#00f", x_label="v"))
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert sum(int(t.rsplit(": ", 1)[1]) for t in titles) == 1000  # every value in one bin
    svg_ok(scatter([(1, 2), (1, 2), (300, 200)], label="s", colour="#00f", x_label="w", y_label="h"))
    svg_ok(histogram([], label="h", colour="#00f", x_label="v"))


def test_a_huge_output_gives_a_bounded_page() -> None:
    """Twenty thousand shards: per-shard charts become histograms and the page stays small."""
    shards = [{"name": f"train-{i:06d}.tar", "samples": 1000 + i % 7, "bytes": 10**9 + i, "sha256": ""}
              for i in range(20_000)]  # fmt: skip
    manifest = {"format": "shardify.manifest/1", "splits": {"train": {
        "lines": 20_000_000, "samples": sum(s["samples"] for s in shards), "rejected": 0, "blank": 0,
        "shards": shards}}}  # fmt: skip
    typed = Manifest.from_json(manifest)
    splits = summarize_manifest(typed)
    report = Report(where="s3://big/out", manifest=typed, options=ReportOptions(), splits=splits,
                    scans={}, shards_read=[], samples=[], rejects=[])  # fmt: skip
    page = render_html(report)
    assert len(page) < 200_000
    assert len(re.findall("<rect", page)) < 3 * 20 + 10 < MAX_COLUMNS
