"""``shardify inspect``: text summary and HTML report of a real build of a generated dataset,
checked against the shards and the manifest, and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

import shardify
from shardify.datagen import DatasetSpec, chat, make_dataset, text_item
from shardify.manifest import read_manifest
from shardify.report import ReportOptions, collect_report, render_html
from shardify.report.sampling import FRAME_THUMB_PX, IMAGE_THUMB_PX, choose_shards
from shardify.report.stats import summarize_manifest
from shardify.storage import Location
from tests.conftest import run_cli

HOSTILE_TEXT = '<script>alert("pwned")</script> & <img src=x onerror=alert(1)>'
HOSTILE_ANSWER = "</div></article><b>bold?</b>"
BAD_LINES = [
    "not json at all",
    '{"messages": 3}',
    orjson.dumps({"messages": chat([{"type": "image", "text": None}], "a"), "images": ["images/nope.jpg"]}).decode(),
    orjson.dumps({"messages": chat([{"type": "image", "text": None}], "b"), "images": ["images/gone.png"]}).decode(),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated dataset with a hostile-text sample and bad lines, built into 4-sample shards."""
    root = tmp_path_factory.mktemp("inspect")
    hostile = orjson.dumps({"messages": chat([text_item(HOSTILE_TEXT)], HOSTILE_ANSWER)}).decode()
    spec = DatasetSpec(image_samples=10, video_samples=3, text_samples=2, extra_lines=[hostile, *BAD_LINES])
    source = make_dataset(root / "ds", spec)
    out = root / "out"
    shardify.build(shardify.load_config({"input": str(source), "output": str(out),
                                         "executor": {"kind": "local"}, "shard": {"max_samples": 4}}))  # fmt: skip
    return source, out


def shard_docs(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(split, key) -> the KEY.json document of every sample, read straight from the tars."""
    docs = {}
    for tar_path in sorted(out.glob("*.tar")):
        split = tar_path.name.rsplit("-", 1)[0]
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    docs[(split, member.name.split(".")[0])] = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    return docs


class ReportParser(HTMLParser):
    """Sample cards (key, split, text, images) and reject sections of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, Any]] = []
        self.reasons: dict[str, int] = {}
        self.reject_rows: list[dict[str, Any]] = []
        self.tags: Counter[str] = Counter()
        self._card: dict[str, Any] | None = None
        self._row: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags[tag] += 1
        if tag == "article":
            self._card = {"key": a["data-key"], "split": a["data-split"], "text": "", "imgs": []}
        elif tag == "img" and self._card is not None:
            self._card["imgs"].append(a["src"])
        elif tag == "section" and "data-reason" in a:
            self.reasons[str(a["data-reason"])] = int(str(a["data-count"]))
        elif tag == "tr" and "data-reason" in a:
            self._row = {"reason": a["data-reason"], "cells": []}
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self._card is not None:
            self.cards.append(self._card)
            self._card = None
        elif tag == "tr" and self._row is not None:
            self.reject_rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._card is not None:
            self._card["text"] += data
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data


def parse_report(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def decode_thumb(uri: str) -> Image.Image:
    head, _, data = uri.partition(",")
    assert head == "data:image/jpeg;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def test_text_summary_counts_match_the_data(built: tuple[Path, Path]) -> None:
    _, out = built
    done = run_cli("inspect", str(out), "--max-shards", "all")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    text = done.stdout
    assert f"train: {train['lines']} lines -> {train['samples']} samples, {train['rejected']} rejected" in text
    assert "invalid_json 1, invalid_schema 1, missing_file 2" in text
    # every shard was read: image 10, video 3, text-only 2 + the hostile one
    assert "image 10 (62%), video 3 (19%), text-only 3 (19%)" in text
    assert "frames per video   8 x3" in text
    assert "images per sample  2 x10" in text
    assert "image width        min 96  median 96  max 96" in text
    assert "from all shards" in text


def test_html_report_shows_real_samples_and_reject_counts(built: tuple[Path, Path], tmp_path: Path) -> None:
    source, out = built
    page = tmp_path / "report.html"
    done = run_cli("inspect", str(out), "--html", str(page), "--samples", "12", "--max-shards", "all",
                   "--input", str(source), "--rejects-per-reason", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = parse_report(page)
    docs = shard_docs(out)
    assert len(report.cards) == 12
    assert len({(c["split"], c["key"]) for c in report.cards}) == 12
    for card in report.cards:
        doc = docs[(card["split"], card["key"])]  # the key is a real sample of that split
        for message in doc["messages"]:
            for item in message["content"]:
                if item["type"] == "text":
                    assert item["text"] in card["text"]
        expected = len(doc["video"]["frames"]) if "video" in doc else len(doc.get("images", []))
        assert len(card["imgs"]) == min(expected, 8)
        box = FRAME_THUMB_PX if "video" in doc else IMAGE_THUMB_PX
        for uri in card["imgs"]:
            assert max(decode_thumb(uri).size) <= box
    manifest = json.loads((out / "manifest.json").read_text())
    assert report.reasons == manifest["splits"]["train"]["rejects_by_reason"]
    raw_lines = (source / "train.jsonl").read_text().splitlines()
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    first = {}
    for reject in rejects:
        first.setdefault(reject["reason"], reject)
    assert len(report.reject_rows) == len(first)  # one example per reason
    for row in report.reject_rows:
        split, line, detail, raw = row["cells"]
        assert first[row["reason"]]["line"] == int(line)
        assert first[row["reason"]]["detail"] == detail
        assert raw == raw_lines[int(line) - 1]


def test_user_text_is_escaped(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = built
    page = tmp_path / "report.html"
    assert run_cli("inspect", str(out), "--html", str(page), "--samples", "100", "--max-shards", "all").returncode == 0
    html = page.read_text(encoding="utf-8")
    report = parse_report(page)
    hostile = [c for c in report.cards if HOSTILE_TEXT in c["text"]]
    assert len(hostile) == 1 and HOSTILE_ANSWER in hostile[0]["text"]
    assert "<script" not in html and "<b>bold?</b>" not in html
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert report.tags["script"] == 0 and report.tags["b"] == 0
    assert all(src.startswith("data:image/jpeg;base64,") for c in report.cards for src in c["imgs"])


def test_selection_is_seeded_and_bounded(built: tuple[Path, Path]) -> None:
    _, out = built
    output = Location(str(out))

    def keys(seed: int) -> list[tuple[str, str]]:
        report = collect_report(output, ReportOptions(samples=5, seed=seed, max_shards=2))
        assert len(report.shards_read) == 2 and not report.problems
        assert {v.shard for v in report.samples} <= {s.name for s in report.shards_read}
        return [(v.split, v.key) for v in report.samples]

    assert keys(1) == keys(1)
    assert len(keys(1)) == 5
    assert {tuple(keys(s)) for s in range(6)} != {tuple(keys(1))}


def test_only_the_chosen_shards_are_read(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Shards outside the seeded draw are replaced by garbage: the report must not notice."""
    _, out = built
    copy = tmp_path / "out"
    copy.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    splits = summarize_manifest(read_manifest(Location(str(out))))
    every = [shard for split in splits for shard in split.shards]
    chosen = {s.name for s in choose_shards(every, 3, seed=7)}
    for shard in every:
        if shard.name not in chosen:
            (copy / shard.name).write_bytes(b"garbage" * 100)
    report = collect_report(Location(str(copy)), ReportOptions(samples=6, seed=7, max_shards=3))
    assert not report.problems
    assert {s.name for s in report.shards_read} == chosen
    assert sum(scan.samples for scan in report.scans.values()) == sum(
        s.samples for s in every if s.name in chosen)
    assert "test" in {s.split for s in report.shards_read}  # every split is represented


def test_a_corrupt_shard_is_reported_not_fatal(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = built
    copy = tmp_path / "out"
    copy.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    data = (copy / "train-000001.tar").read_bytes()
    (copy / "train-000001.tar").write_bytes(data[:700] + b"\xff" * 600 + data[1300:])
    done = run_cli("inspect", str(copy), "--max-shards", "all")
    assert done.returncode == 0, done.stderr
    assert "warning: train-000001.tar: " in done.stdout


def test_reads_through_fsspec_urls(built: tuple[Path, Path]) -> None:
    """The same report from a non-local filesystem (fsspec's memory://)."""
    _, out = built
    memory = Location("memory://inspect-test/out")
    for path in out.iterdir():
        if path.is_file():
            memory.write_bytes(path.name, path.read_bytes())
    try:
        remote = collect_report(memory, ReportOptions(samples=4, seed=3, max_shards=None))
        local = collect_report(Location(str(out)), ReportOptions(samples=4, seed=3, max_shards=None))
        assert [v.key for v in remote.samples] == [v.key for v in local.samples]
        assert remote.scans["train"].modalities == local.scans["train"].modalities
        assert render_html(remote).count("<article") == 4
    finally:
        memory.delete("")


def test_bad_usage_and_missing_output(tmp_path: Path) -> None:
    done = run_cli("inspect", str(tmp_path), "--max-shards", "0")
    assert done.returncode == 2 and "--max-shards" in done.stderr
    done = run_cli("inspect", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "manifest.json" in done.stderr


@pytest.mark.slow
def test_report_renders_in_headless_chromium(built: tuple[Path, Path], tmp_path: Path, render_page: Any) -> None:
    source, out = built
    page = tmp_path / "report.html"
    done = run_cli("inspect", str(out), "--html", str(page), "--max-shards", "all", "--input", str(source))
    assert done.returncode == 0, done.stderr
    result = render_page(page)
    (tmp_path / "report.png").write_bytes(result.screenshot)
    assert result.console_errors == []
    assert result.outside_requests == []  # self-contained: nothing but file: and data: URLs
    assert result.title.startswith("shardify")
    expected_imgs = sum(len(card["imgs"]) for card in parse_report(page).cards)
    assert len(result.images) == expected_imgs > 0
    assert all(i["complete"] and i["width"] > 0 for i in result.images)  # every thumbnail decoded
    shot = Image.open(io.BytesIO(result.screenshot)).convert("RGB")
    assert shot.width == 1280 and shot.height > 2000
    colours = shot.resize((320, shot.height // 4)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500  # not blank: text, charts and thumbnails
    assert max(count for count, _ in colours) < 0.8 * (320 * (shot.height // 4))


@pytest.mark.s3
def test_inspect_an_s3_output_with_its_s3_input(built: tuple[Path, Path], tmp_path: Path, s3_server: Any, s3_bucket: str) -> None:
    from tests.fixtures.s3 import upload_tree

    source, out = built
    upload_tree(s3_server, out, s3_bucket, "out")
    upload_tree(s3_server, source, s3_bucket, "ds")
    page = tmp_path / "report.html"
    options = json.dumps(s3_server.options)
    remote = run_cli("inspect", f"s3://{s3_bucket}/out", "--storage-options", options, "--html", str(page),
                     "--input", f"s3://{s3_bucket}/ds", "--max-shards", "2", "--samples", "5")  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    local = run_cli("inspect", str(out), "--max-shards", "2")
    assert remote.stdout.splitlines()[1:] == local.stdout.splitlines()[1:]  # same figures, same draw
    report = parse_report(page)
    assert len(report.cards) == 5
    raw_lines = (source / "train.jsonl").read_text().splitlines()
    assert report.reject_rows and all(r["cells"][3] == raw_lines[int(r["cells"][1]) - 1] for r in report.reject_rows)
