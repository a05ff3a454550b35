"""Executors run build_shard over the planned tasks: ``local`` in-process, or ``ray``."""

from __future__ import annotations

from shardify.config import ExecutorConfig
from shardify.executors.base import Executor
from shardify.executors.local import LocalExecutor


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor the config asks for. Ray is imported only when chosen."""
    if config.kind == "local":
        return LocalExecutor()
    from shardify.executors.ray import RayExecutor

    return RayExecutor(config)


__all__ = ["Executor", "LocalExecutor", "make_executor"]
