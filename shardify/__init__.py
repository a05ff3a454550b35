"""shardify: Aria-format multimodal chat datasets -> deterministic WebDataset shards.

Public API (everything else is private and may change)::

    from shardify import load_config, build, validate, ShardDataset
"""

from __future__ import annotations

__version__ = "0.1.0"

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

__all__ = [
    "AccessError",
    "BuildError",
    "BuildReport",
    "Config",
    "ConfigError",
    "ManifestError",
    "OutputMismatchError",
    "ReaderError",
    "SampleError",
    "ShardifyError",
    "StorageError",
    "UsageError",
    "VerifyError",
    "__version__",
    "build",
    "load_config",
    "validate",
]
