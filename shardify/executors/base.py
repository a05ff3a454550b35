"""The small interface every executor implements: run one function over many tasks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs ``fn(task)`` for every task and yields results as they finish (any order).

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Exceptions raised by ``fn`` propagate to the caller of :meth:`map_unordered`.
    """

    name: str = "executor"

    @abstractmethod
    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for every task, in completion order."""

    def describe(self) -> str:
        """One line for the build summary: what ran the work, with how many workers."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what the executor started (a local Ray instance, processes)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
