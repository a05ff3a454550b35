"""The Ray executor: one Ray task per shard, bounded in flight, retried when a worker dies.

With no address it starts a private local Ray that listens on 127.0.0.1 only and never
attaches to another cluster on the machine; ``address: auto`` (or ``RAY_ADDRESS``) joins
the running cluster, which is what ``ray job submit ... -- shardify build`` needs.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

from shardify.config import ExecutorConfig
from shardify.executors.base import Executor

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

TASK_RETRIES = 3


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


class RayExecutor(Executor):
    """Runs tasks on a Ray cluster (started locally when no address is configured)."""

    name = "ray"

    def __init__(self, config: ExecutorConfig) -> None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self._ray = ray
        self._started = False
        address = config.address or os.environ.get("RAY_ADDRESS") or None
        if ray.is_initialized():
            pass
        elif address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local", num_cpus=config.num_cpus, include_dashboard=False,
                log_to_driver=False, logging_level=logging.WARNING,
                _node_ip_address="127.0.0.1",
            )  # fmt: skip
            self._started = True
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._max_in_flight = config.max_in_flight or 2 * self._cpus
        self._remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_call)

    def describe(self) -> str:
        where = "local Ray" if self._started else "Ray cluster"
        return f"ray ({where}, {self._cpus} CPUs, {self._max_in_flight} tasks in flight)"

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        ray = self._ray
        fn_ref = ray.put(fn)
        pending: list[Any] = []
        todo = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < self._max_in_flight:
                task: Optional[T] = next(todo, None)
                if task is None:
                    exhausted = True
                else:
                    pending.append(self._remote.remote(fn_ref, task))
            if not pending:
                break
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False
