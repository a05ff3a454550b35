"""The warnings trail: every warning a build counts is one line of warnings.jsonl (split,
line, reason, detail) in input order, shown by the build summary, `inspect` and the HTML
report; `num_frames` above a video's frame count is a warning of its own."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from shardify.config import load_config
from shardify.datagen import DatasetSpec, chat, make_dataset, text_item, video_item
from shardify.pipeline import build, validate
from shardify.report import ReportOptions, collect_report, render_html
from shardify.storage import Location
from tests.conftest import run_cli, write_config


def _video_line(path: str, **video: object) -> str:
    return orjson.dumps({"messages": chat([video_item(), text_item("?")], "ok"),
                         "video": {"path": path, **video}}).decode()  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = [_video_line("videos/clip_000.mp4"),                      # num_frames missing
             _video_line("videos/clip_000.mp4", num_frames=64),       # above its 30 frames
             _video_line("videos/clip_000.mp4", num_frames=4)]        # fine
    spec = DatasetSpec(image_samples=2, video_samples=1, text_samples=1, test_split=False,
                       video_frames=30, extra_lines=extra)  # fmt: skip
    return make_dataset(tmp_path_factory.mktemp("warn") / "ds", spec)


def _trail(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (out / "warnings.jsonl").read_bytes().splitlines()]


def test_every_warning_is_a_line_of_the_trail(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build(load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"},
                                "shard": {"max_samples": 2}}))  # fmt: skip
    trail = _trail(out)
    assert [(w["line"], w["reason"]) for w in trail] == [(5, "num_frames_defaulted"),
                                                         (6, "num_frames_above_total")]
    assert "64 is above the video's 30 frame(s)" in str(trail[1]["detail"])
    counted = report.manifest.splits["train"].warnings
    assert counted == {"num_frames_above_total": 1, "num_frames_defaulted": 1}
    assert sum(counted.values()) == len(trail)


def test_the_summary_inspect_and_html_show_the_trail(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out), executor={"kind": "local"})
    done = run_cli("build", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "num_frames_above_total" in done.stdout and f"details: {out}/warnings.jsonl" in done.stdout
    report = collect_report(Location(str(out)), ReportOptions(samples=0), source=Location(str(root)))
    shown = {w.reason: w for w in report.warnings}  # grouped by reason
    assert {r: w.line for r, w in shown.items()} == {"num_frames_defaulted": 5, "num_frames_above_total": 6}
    above = shown["num_frames_above_total"].source
    assert above is not None and '"num_frames":64' in above
    page = render_html(report)
    section = page[page.index('id="warnings"'):]
    assert 'data-reason="num_frames_above_total"' in section and 'data-count="1"' in section


def test_validate_writes_the_trail_too(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    validate(load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"}}))
    assert [w["reason"] for w in _trail(out)] == ["num_frames_defaulted", "num_frames_above_total"]
    # The build into the same folder replaces the validate report (warnings.jsonl included).
    build(load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"}}))
    assert len(_trail(out)) == 2


def test_few_shards_for_the_cpus_get_a_hint(root: Path, tmp_path: Path) -> None:
    from shardify.progress import small_data_hint

    out = tmp_path / "out"
    report = build(load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"}}))
    hint = small_data_hint(report.manifest, cpus=2)
    assert hint is not None and "train has 1 shard for 2 CPUs" in hint
    assert "shard.max_samples=2 " in hint  # 7 samples over about 4 shards
    many = build(load_config({"input": str(root), "output": str(tmp_path / "many"),
                              "executor": {"kind": "local"}, "shard": {"max_samples": 1}}))  # fmt: skip
    assert small_data_hint(many.manifest, cpus=2) is None
    cfg = write_config(tmp_path / "c.yaml", input=str(root), output=str(tmp_path / "cli"), executor={"kind": "local"})
    assert "note: train has 1 shard for" in run_cli("build", str(cfg)).stdout
