"""Streaming reader: manifest -> shard list -> rank/worker split -> tar stream -> decode.

``ShardDataset`` is the public entry point (also exported as ``shardify.ShardDataset``);
``MixedDataset`` (:mod:`shardify.reader.mixed`, ``shardify.MixedDataset``) mixes several;
``to_hf_dataset`` (in :mod:`shardify.reader.hf`) wraps it for Hugging Face ``datasets``.
"""

from __future__ import annotations

from shardify.reader.dataset import STATE_FORMAT, ShardDataset
from shardify.reader.mixed import MIXED_STATE_FORMAT, MixedDataset

__all__ = ["MIXED_STATE_FORMAT", "STATE_FORMAT", "MixedDataset", "ShardDataset"]
