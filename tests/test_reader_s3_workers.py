"""ShardDataset on S3 under DataLoader workers started by fork (Linux's default) and spawn.

fsspec clients are not fork-safe: one made in the parent and used in a forked worker raised
``RuntimeError: This class is not fork-safe`` on every run. Location now makes its client in
the process that uses it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from shardify.config import load_config
from shardify.datagen import DatasetSpec, make_dataset
from shardify.pipeline import build
from tests.fixtures.reader import loader_order
from tests.fixtures.s3 import S3Server, upload_tree

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.s3, pytest.mark.torch, pytest.mark.slow]


def _key(sample: dict[str, Any]) -> str:
    return str(sample["key"])


@pytest.fixture(scope="module")
def s3_output(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("s3read")
    root = make_dataset(tmp / "ds", DatasetSpec(image_samples=16, video_samples=2, text_samples=6,
                                                test_split=False))  # fmt: skip
    build(load_config({"input": str(root), "output": str(tmp / "out"), "executor": {"kind": "local"},
                       "shard": {"max_samples": 5}}))  # fmt: skip
    bucket = f"read-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    upload_tree(s3_server, tmp / "out", bucket, "out")
    return f"s3://{bucket}/out", s3_server.options


def _loader_keys(url: str, options: dict[str, Any], context: str, *, persistent: bool = False,
                 epochs: int = 1, touch_parent: bool = False) -> list[list[str]]:  # fmt: skip
    from shardify import ShardDataset

    ds = ShardDataset(url, shuffle=True, seed=3, storage_options=options, transform=_key)
    if touch_parent:  # the parent used its client before the fork
        assert ds.location.exists("manifest.json")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                         multiprocessing_context=context,
                                         persistent_workers=persistent)  # fmt: skip
    runs = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        runs.append(list(loader))
    return runs


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_s3_under_dataloader_workers(s3_output: tuple[str, dict[str, Any]], context: str) -> None:
    from shardify import ShardDataset

    url, options = s3_output
    (keys,) = _loader_keys(url, options, context, touch_parent=True)
    single = list(ShardDataset(url, shuffle=True, seed=3, storage_options=options, transform=_key))
    assert len(keys) == len(single) == 24
    assert Counter(keys) == Counter(single)  # every sample once, the same samples


def test_s3_with_persistent_forked_workers_over_three_epochs(s3_output: tuple[str, dict[str, Any]]) -> None:
    """set_epoch reaches persistent workers: each epoch has its own order (issue 14)."""
    from shardify import ShardDataset

    url, options = s3_output
    runs = _loader_keys(url, options, "fork", persistent=True, epochs=3)
    for epoch, keys in enumerate(runs):
        reference = ShardDataset(url, shuffle=True, seed=3, storage_options=options, transform=_key)
        reference.set_epoch(epoch)
        assert keys == loader_order(reference, workers=2, batch_size=1), epoch
        assert sorted(keys) == [f"{i:09d}" for i in range(24)]
    assert len({tuple(keys) for keys in runs}) == 3
