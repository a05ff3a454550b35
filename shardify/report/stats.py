"""Summary statistics of a built output: exact figures from the manifest, estimates from shards.

The manifest gives exact per-split counts (lines, samples, rejects by reason, shard sizes,
images and frames). What a sample *is* (image, video or text-only), how many frames each
video has and how large the images are can only be seen inside the shards; those figures
come from the shards that :mod:`shardify.report.sampling` reads and say how many they cover.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from shardify.manifest import Manifest, SplitInfo

MODALITIES = ("image", "video", "text")
"""Kinds of sample, in display order: images, a video, or text only."""

MAX_SIZE_POINTS = 4000
"""At most this many image sizes are kept per split (a seeded reservoir) for the scatter plot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """Order statistics of a list of numbers (all zero when the list is empty)."""

    count: int
    minimum: float
    p10: float
    median: float
    p90: float
    maximum: float
    mean: float
    total: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(count=0, minimum=0, p10=0, median=0, p90=0, maximum=0, mean=0, total=0)
        ordered = sorted(values)
        return cls(
            count=len(ordered), minimum=ordered[0], p10=_quantile(ordered, 0.1),
            median=statistics.median(ordered), p90=_quantile(ordered, 0.9),
            maximum=ordered[-1], mean=sum(ordered) / len(ordered), total=sum(ordered),
        )  # fmt: skip


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardRef:
    """One shard as the manifest lists it, with its split and position."""

    split: str
    index: int
    name: str
    samples: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSummary:
    """The manifest's exact figures for one split."""

    name: str
    source: str
    lines: int
    samples: int
    rejected: int
    blank: int
    images: int
    frames: int
    rejects_by_reason: dict[str, int]
    warnings: dict[str, int]
    shards: list[ShardRef]

    @property
    def shard_bytes(self) -> Distribution:
        return Distribution.of([s.bytes for s in self.shards])

    @property
    def shard_samples(self) -> Distribution:
        return Distribution.of([s.samples for s in self.shards])

    @classmethod
    def from_manifest(cls, name: str, info: SplitInfo) -> SplitSummary:
        shards = [ShardRef(split=name, index=i, name=s.name, samples=s.samples, bytes=s.bytes)
                  for i, s in enumerate(info.shards)]  # fmt: skip
        return cls(
            name=name, source=info.source, lines=info.lines, samples=info.samples,
            rejected=info.rejected, blank=info.blank, images=info.images, frames=info.frames,
            rejects_by_reason=dict(info.rejects_by_reason), warnings=dict(info.warnings),
            shards=shards,
        )  # fmt: skip


def summarize_manifest(manifest: Manifest) -> list[SplitSummary]:
    """One :class:`SplitSummary` per split, in the manifest's order."""
    return [SplitSummary.from_manifest(name, info) for name, info in manifest.splits.items()]


@dataclass(slots=True)
class SplitScan:
    """What the shards read from one split showed (counts over the samples seen)."""

    split: str
    shards_read: int = 0
    samples: int = 0
    modalities: Counter[str] = field(default_factory=Counter)
    images_per_sample: Counter[int] = field(default_factory=Counter)
    frames_per_video: Counter[int] = field(default_factory=Counter)
    image_formats: Counter[str] = field(default_factory=Counter)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    images_seen: int = 0
    turns: Counter[int] = field(default_factory=Counter)
    text_chars: list[int] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add_sample(self, doc: dict[str, Any]) -> str:
        """Count one sample from its ``KEY.json`` document; returns its modality."""
        self.samples += 1
        video = doc.get("video")
        images = doc.get("images") or []
        if isinstance(video, dict):
            modality = "video"
            self.frames_per_video[len(video.get("frames") or [])] += 1
        elif images:
            modality = "image"
            self.images_per_sample[len(images)] += 1
        else:
            modality = "text"
        self.modalities[modality] += 1
        messages = doc.get("messages") or []
        self.turns[len(messages)] += 1
        self.text_chars.append(sum(len(text) for _, text in iter_texts(messages)))
        return modality

    def add_image(self, fmt: str, size: tuple[int, int] | None) -> None:
        """Count one image member; ``size`` is None when its header could not be read."""
        self.image_formats[fmt] += 1
        if size is None:
            return
        self.images_seen += 1
        if len(self.image_sizes) < MAX_SIZE_POINTS:
            self.image_sizes.append(size)
        else:  # reservoir sampling keeps a uniform, bounded subset
            slot = self._rng.randrange(self.images_seen)
            if slot < MAX_SIZE_POINTS:
                self.image_sizes[slot] = size


def iter_texts(messages: Any) -> list[tuple[str, str]]:
    """``(role, text)`` for every text item of an Aria message list (tolerant of bad shapes)."""
    found: list[tuple[str, str]] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        for item in message.get("content") or []:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                found.append((str(message.get("role", "")), item["text"]))
    return found


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"
