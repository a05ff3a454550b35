"""The in-process executor: one task after another, for debugging and small data."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from shardify.executors.base import Executor

T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor(Executor):
    """Runs every task in the calling process, in order."""

    name = "local"

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        for task in tasks:
            yield fn(task)

    def describe(self) -> str:
        return "local (in-process, 1 worker)"
