"""Hugging Face ``datasets`` adapter: ShardDataset samples as a ``datasets.IterableDataset``.

HF's generic webdataset builder refuses shardify shards (its samples carry different member
sets: multi-image, video and text-only side by side), so this adapter streams through
:class:`~shardify.reader.ShardDataset` instead and keeps its order, rank split and decoding.
"""

from __future__ import annotations

from typing import Any, Iterator

from shardify.errors import ReaderError
from shardify.reader.dataset import ShardDataset

COLUMNS = ("key", "messages", "images", "source", "image_paths", "video")
"""Every example has these columns (``image_paths`` is [] and ``video`` None when absent)."""


def to_hf_dataset(url: str, split: str = "train", *, epoch: int = 0, parts: int = 1,
                  **options: Any) -> Any:  # fmt: skip
    """A ``datasets.IterableDataset`` of the samples this rank reads in ``epoch``.

    ``options`` are ShardDataset's keyword arguments (``shuffle``, ``seed``,
    ``storage_options``, ``rank``/``world_size``, ``decode_images``, ...). ``parts`` splits
    the rank's samples into that many pieces, which HF hands to DataLoader workers: use
    ``parts=num_workers``. Images stay PIL objects (no Arrow features are declared).
    """
    import datasets

    if "transform" in options:
        raise ReaderError("to_hf_dataset takes no transform: use the datasets' .map() instead")
    ShardDataset(url, split, **options)  # fail here, not in a worker, on a bad url or split
    return datasets.IterableDataset.from_generator(
        _generate,
        gen_kwargs={"part": list(range(parts)), "parts": parts, "epoch": epoch,
                    "dataset_args": {"url": url, "split": split, **options}},
    )  # fmt: skip


def _generate(part: list[int], parts: int, epoch: int, dataset_args: dict[str, Any]) -> Iterator[dict[str, Any]]:
    dataset = ShardDataset(**dataset_args)
    dataset.set_epoch(epoch)
    for index in part:
        for sample in dataset.iter_part(index, parts):
            yield {name: sample.get(name, [] if name == "image_paths" else None) for name in COLUMNS}
