"""The Ray executor: one Ray task per shard, bounded in flight, retried when a worker dies.

Where the work runs:

- no address (the default): a private local Ray sized to the machine, started quietly
  (no dashboard, no worker logs in the terminal) with every listener on 127.0.0.1. It is
  started with ``address="local"``, so it never attaches to another or a stale cluster that
  a bare ``ray.init()`` would find through Ray's address file. It stops when the build ends.
- ``executor.address`` (``auto``, ``host:port`` or ``ray://...``) or ``RAY_ADDRESS``: join
  that cluster. ``ray job submit ... -- shardify build cfg.yaml`` sets ``RAY_ADDRESS`` for
  the job's driver, so a submitted build joins the cluster it was submitted to.
- a process that already called ``ray.init()`` (a notebook, a test) keeps its connection.

Task errors reach the caller as the original shardify error (not a Ray traceback); a
worker that dies mid-task is retried by Ray, and ``build_shard`` only ever shows a shard
under its final name once it is complete, so a retry cannot leave a half-written shard.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections import Counter
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar
from urllib.parse import urlsplit

from shardify.config import ExecutorConfig
from shardify.errors import BuildError, ConfigError, ShardifyError
from shardify.executors.base import Executor
from shardify.interrupts import deferred_signals, reinstall_sigterm

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

TASK_RETRIES = 3
"""Ray reruns a task this many times when its worker or node dies (not on task errors)."""
LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
WAIT_S = 0.5

# Ray reads these when it starts its processes. The first keeps every listener of a local
# Ray on the node address (127.0.0.1) instead of all interfaces (see NOTES.md).
_LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Defaults only: a user's own setting wins. Ray starts workers at nice 15, which on a busy
# laptop lets every other process take their CPU first (a build measured 3x slower).
_LOCAL_RAY_DEFAULTS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
# Ray keeps token auth on for a new local instance (its default) and says so on every
# start; that line is noise for a private instance that goes away with the build.
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


def _run_shard(fn: Callable[[Any], Any], task: Any) -> tuple[Any, str]:
    """The Ray task: run one shard and say which node ran it (Ray names the worker after it)."""
    import ray

    return fn(task), ray.get_runtime_context().get_node_id()


class RayExecutor(Executor):
    """Runs tasks on a Ray cluster (a private local one when no address is configured)."""

    name = "ray"

    def __init__(self, config: ExecutorConfig) -> None:
        import ray

        self._ray = ray
        self._started = False
        self._where = "Ray (already connected)"
        address = cluster_address(config)
        if ray.is_initialized():
            pass
        elif address is None:
            start_local_ray(config.num_cpus)
            self._started = True
            self._where = "local Ray on 127.0.0.1"
        else:
            join_ray(address, where=_address_origin(config))
            self._where = "Ray cluster"
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._max_in_flight = config.max_in_flight or 2 * self._cpus
        self._remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_shard)
        self.tasks_per_node: Counter[str] = Counter()
        """How many tasks each Ray node (by node id) ran, for the log and for tests."""

    def describe(self) -> str:
        return f"ray ({self._where}, {self._cpus} CPUs, {self._max_in_flight} tasks in flight)"

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Keep at most ``max_in_flight`` tasks submitted; yield each result as it lands."""
        ray = self._ray
        fn_ref = ray.put(fn)
        reinstall_sigterm()  # again: Ray may re-arm its own handler once its core is up
        pending: dict[Any, T] = {}
        todo = iter(tasks)
        exhausted = False
        interrupted = False
        try:
            while pending or not exhausted:
                while not exhausted and len(pending) < self._max_in_flight:
                    try:
                        task = next(todo)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[self._remote.remote(fn_ref, task)] = task
                    # Ray's core may install its own SIGTERM handler (abort + stack dump) on
                    # first use, after ray.init: ours goes back after every submission.
                    reinstall_sigterm()
                if not pending:
                    break
                # A bounded wait returns to Python regularly, so a signal is handled at once.
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    task = pending.pop(ref)
                    result, node_id = self._fetch(ref, task)
                    self.tasks_per_node[node_id] += 1
                    yield result
        except KeyboardInterrupt:
            interrupted = True  # no cancel calls: shutting Ray down stops every task at once
            raise
        finally:
            if not interrupted:
                self._cancel(pending)

    def _fetch(self, ref: Any, task: Any) -> tuple[Any, str]:
        """``ray.get`` one task, turning Ray's wrappers back into what the task raised."""
        ray = self._ray
        try:
            return ray.get(ref)  # type: ignore[no-any-return]
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ShardifyError):
                raise cause from None
            if isinstance(cause, BaseException):
                raise cause from exc
            raise
        except ray.exceptions.RayError as exc:
            raise BuildError(
                f"{_task_name(task)}: the Ray task failed ({type(exc).__name__}: "
                f"{_first_line(exc)}) after {TASK_RETRIES} retries; finished shards are "
                "kept, rerun the same command to resume"
            ) from exc

    def _cancel(self, pending: dict[Any, Any]) -> None:
        """Stop tasks nobody will wait for (an error or an interrupt ended the build)."""
        if not pending or not self._ray.is_initialized():
            return
        log.info("cancelling %d unfinished shard task(s)", len(pending))
        for ref in pending:
            try:
                self._ray.cancel(ref)
            except Exception as exc:  # best effort: the shard is redone by the next run
                log.debug("could not cancel %s: %s", ref, exc)

    def close(self) -> None:
        if self.tasks_per_node:
            spread = ", ".join(
                f"{node[:8]}: {n}" for node, n in sorted(self.tasks_per_node.items())
            )
            log.info("ray: %d task(s) ran on %d node(s) (%s)",
                     sum(self.tasks_per_node.values()), len(self.tasks_per_node), spread)  # fmt: skip
        if self._started and self._ray.is_initialized():
            with deferred_signals():  # shutdown leaves SIGTERM at its default (kill, no word)
                self._ray.shutdown()
        self._started = False


def cluster_address(config: ExecutorConfig) -> Optional[str]:
    """The cluster to join, or None to start a private local Ray.

    ``executor.address`` wins over ``RAY_ADDRESS``; ``local`` (either way) means a private
    local Ray, like no address at all.
    """
    address = (config.address or os.environ.get("RAY_ADDRESS") or "").strip()
    return None if address in ("", "local") else address


def _address_origin(config: ExecutorConfig) -> str:
    return "executor.address" if config.address else "RAY_ADDRESS"


def start_local_ray(num_cpus: Optional[int] = None) -> None:
    """Start a private Ray on this machine: loopback only, no dashboard, quiet.

    ``address="local"`` makes Ray start a new instance even when its address file names a
    cluster (live or stale) that a bare ``ray.init()`` would attach to.
    """
    import ray

    with _local_ray_env(), _package_cwd(), deferred_signals():
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False,
            log_to_driver=False, logging_level=logging.WARNING, _node_ip_address=LOOPBACK,
        )  # fmt: skip
    log.info("started a private local Ray on %s (%s CPUs)", LOOPBACK,
             int(ray.cluster_resources().get("CPU", 0)))  # fmt: skip


def join_ray(address: str, *, where: str = "executor.address") -> None:
    """Connect to a running cluster; ConfigError at once when nothing answers there.

    A cluster on a loopback address (``ray start --head --node-ip-address=127.0.0.1``) is
    joined with the loopback settings: otherwise Ray swaps 127.0.0.1 for the machine's
    external address and waits for minutes on a GCS that is not there.
    """
    import ray

    host = _check_reachable(address, where)
    loopback = host is not None and _is_loopback(host)
    try:
        with _local_ray_env() if loopback else nullcontext(), _package_cwd(), deferred_signals():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: cannot join the Ray cluster at {address!r}: {_first_line(exc)}; "
            "start the cluster, or leave executor.address unset for a private local Ray"
        ) from exc


@contextmanager
def _package_cwd() -> Iterator[None]:
    """Run ``ray.init`` from the folder that holds the shardify package this driver imported.

    Ray puts the driver's working directory on every worker's ``sys.path`` ahead of
    site-packages, so a folder named ``shardify`` (a clone) or a stray ``manifest.py`` in
    the user's CWD would shadow the installed package in the workers. From here, the path
    Ray adds is the one this driver's own shardify came from. Every path a task gets is
    absolute (the pipeline normalises them), so the workers' CWD does not matter.
    """
    import shardify

    home = os.path.dirname(os.path.dirname(os.path.abspath(shardify.__file__)))
    saved = os.getcwd()
    os.chdir(home)
    try:
        yield
    finally:
        os.chdir(saved)


@contextmanager
def _local_ray_env() -> Iterator[None]:
    """Environment for a Ray on loopback (started or joined); the caller's is restored after.

    Ray's processes inherit it (and its workers inherit theirs). When ``ray`` was imported
    before the variable was set, its module-level copy is switched too.
    """
    from ray._private import ray_constants

    quiet = _DropTokenNotice()
    logging.getLogger(_AUTH_LOGGER).addFilter(quiet)
    values = dict(_LOCAL_RAY_ENV)
    values.update({k: v for k, v in _LOCAL_RAY_DEFAULTS.items() if k not in os.environ})
    saved = {key: os.environ.get(key) for key in values}
    saved_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ.update(values)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        logging.getLogger(_AUTH_LOGGER).removeFilter(quiet)
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_reachable(address: str, where: str) -> Optional[str]:
    """Fail fast where ``ray.init`` would wait for minutes on an address nobody answers.

    Returns the host the address names (None when it is not of the form host:port).
    """
    target = _resolve_auto(address) if address == "auto" else address
    if target is None:
        raise ConfigError(
            f"{where}: {address!r}: no running Ray cluster found on this machine; start one "
            "(ray start --head) or leave executor.address unset for a private local Ray"
        )
    parts = urlsplit(target if "://" in target else f"ray://{target}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        return None  # not host:port: let Ray judge it
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"{where}: nothing answers at {target} ({exc.strerror or exc}); start the Ray "
            "cluster, or leave executor.address unset for a private local Ray"
        ) from None
    return host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _resolve_auto(address: str) -> Optional[str]:
    """What ``auto`` means to Ray: ``RAY_ADDRESS``, else what ``ray start`` recorded here."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    try:
        from ray._private.utils import read_ray_address

        return read_ray_address()  # type: ignore[no-any-return]
    except (ImportError, OSError):
        return address  # cannot tell here: let ray.init decide


def _task_name(task: Any) -> str:
    return str(getattr(task, "name", task))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
