"""Read a bounded, seeded selection of shards: statistics of their samples and a few samples
in full (JSON plus thumbnails of their images or frames) for the contact sheet.

Shards are streamed once each (``tarfile`` mode ``r|``) through :class:`Location`, so local
and S3 outputs read the same way and nothing is downloaded beyond the shards chosen. Only
the samples picked for the contact sheet keep their media bytes, and only as thumbnails.
"""

from __future__ import annotations

import base64
import bisect
import io
import itertools
import logging
import posixpath
import random
import tarfile
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import orjson
from PIL import Image

from shardify.errors import StorageError
from shardify.report.stats import ShardRef, SplitScan
from shardify.storage import Location
from shardify.tarwriter import split_member_name

log = logging.getLogger(__name__)

IMAGE_THUMB_PX = 240
FRAME_THUMB_PX = 132
MAX_IMAGES_SHOWN = 6
MAX_FRAMES_SHOWN = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Thumb:
    """One inlined thumbnail: a ``data:`` URI and what it shows."""

    uri: str
    label: str
    width: int
    height: int
    thumb_width: int = 0
    thumb_height: int = 0


@dataclass(slots=True, kw_only=True)
class SampleView:
    """A sample picked for the contact sheet: its JSON document and thumbnails."""

    key: str
    split: str
    shard: str
    modality: str
    doc: dict[str, Any]
    thumbs: list[Thumb] = field(default_factory=list)
    hidden_media: int = 0
    """Images or frames of the sample that are not shown (beyond the per-sample limit)."""


@dataclass(slots=True, kw_only=True)
class ScanResult:
    """Everything read from the shards: per-split statistics, picked samples, problems."""

    scans: dict[str, SplitScan]
    samples: list[SampleView]
    shards_read: list[ShardRef]
    problems: list[str] = field(default_factory=list)


def choose_shards(shards: Sequence[ShardRef], limit: Optional[int], seed: int) -> list[ShardRef]:
    """A seeded selection of at most ``limit`` shards (None: all), each split represented
    when the limit allows; returned in output order so reads go forward."""
    if limit is None or limit >= len(shards):
        return list(shards)
    rng = random.Random(seed)
    chosen: list[ShardRef] = []
    for split in dict.fromkeys(s.split for s in shards):
        if len(chosen) < limit:
            chosen.append(rng.choice([s for s in shards if s.split == split]))
    rest = [s for s in shards if s not in chosen]
    chosen.extend(rng.sample(rest, limit - len(chosen)))
    order = {s.name: i for i, s in enumerate(shards)}
    return sorted(chosen, key=lambda s: order[s.name])


def choose_picks(shards: Sequence[ShardRef], count: int, seed: int) -> set[tuple[str, int]]:
    """``(shard name, ordinal)`` of ``count`` samples drawn uniformly from ``shards``."""
    total = sum(s.samples for s in shards)
    positions = random.Random(seed).sample(range(total), min(count, total))
    starts = list(itertools.accumulate((s.samples for s in shards), initial=0))
    picks: set[tuple[str, int]] = set()
    for position in positions:
        index = bisect.bisect_right(starts, position) - 1
        picks.add((shards[index].name, position - starts[index]))
    return picks


def scan_shards(output: Location, shards: Sequence[ShardRef], picks: set[tuple[str, int]]) -> ScanResult:
    """Stream every shard in ``shards`` once; count all samples, keep the picked ones."""
    result = ScanResult(scans={}, samples=[], shards_read=[])
    for shard in shards:
        scan = result.scans.setdefault(shard.split, SplitScan(shard.split))
        wanted = {ordinal for name, ordinal in picks if name == shard.name}
        before = scan.samples
        try:
            result.samples.extend(_scan_one(output, shard, wanted, scan))
        except (OSError, tarfile.TarError, StorageError, ValueError) as exc:
            _problem(result, f"{shard.name}: could not be read completely: {exc}")
            continue
        if scan.samples - before != shard.samples:  # tarfile ends quietly at a bad header
            _problem(result, f"{shard.name}: {scan.samples - before} readable samples, "
                             f"the manifest lists {shard.samples}")  # fmt: skip
        scan.shards_read += 1
        result.shards_read.append(shard)
    return result


def _problem(result: ScanResult, message: str) -> None:
    log.warning("%s", message)
    result.problems.append(message)


def _scan_one(output: Location, shard: ShardRef, wanted: set[int], scan: SplitScan) -> list[SampleView]:
    picked: list[SampleView] = []
    key: Optional[str] = None
    members: dict[str, bytes] = {}
    ordinal = -1
    with output.open(shard.name, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            member_key, suffix = split_member_name(posixpath.basename(info.name))
            if member_key != key:
                _finish(shard, key, ordinal in wanted, members, scan, picked)
                key, members, ordinal = member_key, {}, ordinal + 1
            if suffix == "json" or suffix.startswith("image") or ordinal in wanted:
                handle = tar.extractfile(info)
                members[suffix] = handle.read() if handle is not None else b""
        _finish(shard, key, ordinal in wanted, members, scan, picked)
    return picked


def _finish(
    shard: ShardRef,
    key: Optional[str],
    keep: bool,
    members: dict[str, bytes],
    scan: SplitScan,
    picked: list[SampleView],
) -> None:
    """Count one finished sample; build its view when it was picked."""
    if key is None:
        return
    try:
        doc = orjson.loads(members.get("json", b""))
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        log.warning("%s: sample %s has no readable JSON member", shard.name, key)
        return
    modality = scan.add_sample(doc)
    for suffix, data in members.items():
        if suffix.startswith("image"):
            scan.add_image(suffix.rpartition(".")[2], _image_size(data))
    if keep:
        view = SampleView(key=key, split=shard.split, shard=shard.name, modality=modality, doc=doc)
        _add_thumbs(view, members)
        picked.append(view)


def _image_size(data: bytes) -> Optional[tuple[int, int]]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - any decoder failure just means "size unknown"
        return None


def _add_thumbs(view: SampleView, members: dict[str, bytes]) -> None:
    video = view.doc.get("video")
    if isinstance(video, dict):
        frames = [str(f) for f in video.get("frames") or []]
        shown = _spread(len(frames), MAX_FRAMES_SHOWN)
        indices = video.get("frame_indices") or []
        stamps = video.get("timestamps") or []
        for j in shown:
            label = f"#{_at(indices, j)} · {_seconds(_at(stamps, j))}"
            view.thumbs.append(_thumb(members.get(frames[j], b""), label, FRAME_THUMB_PX))
        view.hidden_media = len(frames) - len(shown)
        return
    images = [str(s) for s in view.doc.get("images") or []]
    for i, suffix in enumerate(images[:MAX_IMAGES_SHOWN]):
        view.thumbs.append(_thumb(members.get(suffix, b""), f"image {i}", IMAGE_THUMB_PX))
    view.hidden_media = max(0, len(images) - MAX_IMAGES_SHOWN)


def _spread(total: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(total)``, first and last included."""
    if total <= limit:
        return list(range(total))
    return sorted({round(i * (total - 1) / (limit - 1)) for i in range(limit)})


def _at(values: Sequence[Any], index: int) -> Any:
    return values[index] if index < len(values) else "?"


def _seconds(value: Any) -> str:
    return f"{value:.1f}s" if isinstance(value, (int, float)) else "?"


def _thumb(data: bytes, label: str, box: int) -> Thumb:
    """A JPEG thumbnail inlined as a data URI; an empty URI when the bytes do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.draft("RGB", (box, box))  # JPEG: decode at a reduced scale, much faster
            small = image.convert("RGB")
            small.thumbnail((box, box), Image.Resampling.BICUBIC)
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=82, optimize=True)
    except Exception as exc:  # noqa: BLE001 - shown in the report as an undecodable tile
        log.warning("cannot make a thumbnail of %s: %s", label, exc)
        return Thumb(uri="", label=f"{label} (cannot decode)", width=0, height=0)
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return Thumb(uri=uri, label=label, width=width, height=height,
                 thumb_width=small.width, thumb_height=small.height)  # fmt: skip
