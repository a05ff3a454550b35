"""RayExecutor on a real 2-node Ray: bounded submission, errors as raised, joining rules."""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from shardify.config import ExecutorConfig
from shardify.errors import ConfigError, SampleError
from shardify.executors.ray import RayExecutor, cluster_address, join_ray
from tests.fixtures.ray import RayCluster, free_ports, short_tempdir

pytestmark = pytest.mark.ray


def square(x: int, *, fail_on: int = -1, error: str = "sample") -> int:
    """A task: x * x, or the error asked for on ``fail_on``."""
    if x == fail_on:
        if error == "sample":
            raise SampleError("/data/train.jsonl", 7, "invalid_json", "not JSON")
        raise KeyError(f"task {x}")
    time.sleep(0.05)
    return x * x


class CountingTasks:
    """An iterable of tasks that counts how many the executor has taken so far."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            with self.lock:
                self.taken += 1
            yield i


def test_map_unordered_bounds_tasks_in_flight(ray_cluster: RayCluster) -> None:
    executor = RayExecutor(ExecutorConfig(max_in_flight=3))
    tasks = CountingTasks(20)
    results = []
    for result in executor.map_unordered(square, tasks):
        # Never more than max_in_flight submitted beyond what has come back.
        assert tasks.taken <= len(results) + 1 + 3
        results.append(result)
    executor.close()
    assert sorted(results) == [i * i for i in range(20)]
    assert sum(executor.tasks_per_node.values()) == 20


def test_task_error_reaches_caller_as_raised(ray_cluster: RayCluster) -> None:
    with RayExecutor(ExecutorConfig()) as executor:
        with pytest.raises(SampleError) as info:
            list(executor.map_unordered(functools.partial(square, fail_on=5), range(10)))
    # The original exception, not Ray's wrapper carrying a remote traceback.
    assert type(info.value) is SampleError
    assert str(info.value).startswith("/data/train.jsonl:7: invalid_json: not JSON")
    assert info.value.line == 7


def test_unexpected_error_keeps_its_type(ray_cluster: RayCluster) -> None:
    with RayExecutor(ExecutorConfig()) as executor:
        with pytest.raises(KeyError, match="task 3"):
            list(
                executor.map_unordered(functools.partial(square, fail_on=3, error="key"), range(6))
            )


def test_executor_reuses_an_existing_connection(ray_cluster: RayCluster) -> None:
    import ray

    with RayExecutor(ExecutorConfig()) as executor:
        assert "already connected" in executor.describe()
        assert "2 CPUs" in executor.describe()
    assert ray.is_initialized()  # closing did not shut down what it did not start


def test_cluster_address_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(ExecutorConfig()) is None
    assert cluster_address(ExecutorConfig(address="local")) is None
    assert cluster_address(ExecutorConfig(address="auto")) == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert cluster_address(ExecutorConfig()) == "127.0.0.1:6379"
    assert cluster_address(ExecutorConfig(address="10.0.0.1:6379")) == "10.0.0.1:6379"


def test_join_fails_fast_when_nothing_listens() -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=rf"executor.address: nothing answers at 127.0.0.1:{port}"
    ):
        join_ray(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10  # ray.init would wait for minutes


def test_join_auto_without_a_cluster_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    empty: Path = short_tempdir("sfe")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(empty))  # no ray_current_cluster file there
    with pytest.raises(ConfigError, match="no running Ray cluster found"):
        join_ray("auto")
    empty.rmdir()
