"""shardify: Aria-format multimodal chat datasets -> deterministic WebDataset shards.

Public API (everything else is private and may change)::

    from shardify import load_config, build, validate, ShardDataset, MixedDataset
"""

from __future__ import annotations

import warnings

from shardify._version import __version__  # noqa: F401

# Pillow says this for a valid palette PNG on every convert("RGB") (build checks, inspect
# thumbnails, the reader): noise on a user's terminal and training log, never an error.
warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)
from shardify.config import Config, load_config  # noqa: E402
from shardify.errors import (  # noqa: E402
    AccessError,
    BuildError,
    ConfigError,
    ManifestError,
    OutputMismatchError,
    ReaderError,
    SampleError,
    ShardifyError,
    StorageError,
    UsageError,
    VerifyError,
)
from shardify.pipeline import BuildReport, build, validate  # noqa: E402


def __getattr__(name: str) -> object:
    """``ShardDataset`` and ``MixedDataset`` are imported on first use: they import torch
    when torch is installed."""
    if name == "ShardDataset":
        from shardify.reader import ShardDataset

        return ShardDataset
    if name == "MixedDataset":
        from shardify.reader import MixedDataset

        return MixedDataset
    raise AttributeError(f"module 'shardify' has no attribute {name!r}")


__all__ = [
    "AccessError",
    "BuildError",
    "BuildReport",
    "Config",
    "ConfigError",
    "ManifestError",
    "MixedDataset",
    "OutputMismatchError",
    "ReaderError",
    "SampleError",
    "ShardDataset",
    "ShardifyError",
    "StorageError",
    "UsageError",
    "VerifyError",
    "__version__",
    "build",
    "load_config",
    "validate",
]
