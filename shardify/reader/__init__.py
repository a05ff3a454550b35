"""Streaming reader: manifest -> shard list -> rank/worker split -> tar stream -> decode.

``ShardDataset`` is the public entry point (also exported as ``shardify.ShardDataset``);
``to_hf_dataset`` (in :mod:`shardify.reader.hf`) wraps it for Hugging Face ``datasets``.
"""

from __future__ import annotations

from shardify.reader.dataset import STATE_FORMAT, ShardDataset

__all__ = ["STATE_FORMAT", "ShardDataset"]
