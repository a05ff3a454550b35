"""``shardify head``: the first N samples of an output as text (key, source line, messages
with <image> placeholders, media members and sizes), across shards, locally and on S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shardify.config import load_config
from shardify.datagen import DatasetSpec, make_dataset
from shardify.pipeline import build
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("head")
    root = make_dataset(work / "ds", DatasetSpec(image_samples=3, video_samples=1, text_samples=2, num_frames=3))
    build(load_config({"input": str(root), "output": str(work / "out"), "executor": {"kind": "local"},
                       "shard": {"max_samples": 2}}))  # fmt: skip
    return work / "out"


def _blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b.startswith("== ")]


def test_head_prints_the_first_samples_across_shards(out: Path) -> None:
    done = run_cli("head", str(out), "-n", "5")
    assert done.returncode == 0, done.stderr
    blocks = _blocks(done.stdout)
    assert [b.split()[1] for b in blocks] == [f"{i:09d}" for i in range(5)]  # shards 0, 1 and 2
    assert "train-000002.tar #0; train.jsonl:5)" in blocks[4]
    lines = (out.parent / "ds" / "train.jsonl").read_text().splitlines()
    for block, line in zip(blocks, lines):
        doc = json.loads(line)
        images = len(doc.get("images") or []) or (3 if "video" in doc else 0)
        user = next(x for x in block.splitlines() if x.startswith("  user: "))
        assert user.count("<image>") == images, block  # a video's frames are images, as training sees them
        assert len([x for x in block.splitlines() if x.startswith("  [")]) == (
            len(doc.get("images") or []) + (3 if "video" in doc else 0))


def test_head_past_the_end_and_other_splits(out: Path) -> None:
    assert len(_blocks(run_cli("head", str(out), "-n", "100").stdout)) == 6
    test = run_cli("head", str(out), "--split", "test")
    assert test.returncode == 0 and len(_blocks(test.stdout)) == 1
    bad = run_cli("head", str(out), "--split", "dev")
    assert bad.returncode == 2 and "has splits ['test', 'train']" in bad.stderr


@pytest.mark.s3
@pytest.mark.slow
def test_head_reads_s3(out: Path, s3_server: Any, s3_bucket: str) -> None:
    from tests.fixtures.s3 import upload_tree

    upload_tree(s3_server, out, s3_bucket, "out")
    done = run_cli("head", f"s3://{s3_bucket}/out", "-n", "2", "--storage-options",
                   json.dumps(s3_server.options))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(_blocks(done.stdout)) == 2 and f"s3://{s3_bucket}/out/train-000000.tar #0" in done.stdout
