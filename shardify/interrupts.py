"""SIGINT and SIGTERM end a build the same way: one line, exit 130 / 143, output resumable.

Python turns SIGINT into KeyboardInterrupt; SIGTERM (what a preempted job, ``kill`` or
``ray job stop`` sends) would kill the process without cleanup, and Ray's core library
installs its own SIGTERM handler that aborts with a C stack dump. The CLI installs
:func:`_terminate` for SIGTERM, and the Ray executor installs it again after ``ray.init``,
so both signals unwind through the executor's ``finally`` blocks (Ray shut down
deliberately, the video helper stopped) before the CLI prints its line.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, Optional


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; unwinds like Ctrl-C, exits 143 instead of 130."""

    exit_code = 143


_installed = False
INTERRUPTED_LINE = "shardify: interrupted; rerun the same command to resume"


def install_early() -> None:
    """Until the command runs (imports, argument parsing: nothing written yet), SIGINT and
    SIGTERM end the process at once with the usual line and exit code, not a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_now)
        signal.signal(signal.SIGTERM, _exit_now)


def _exit_now(signum: int, frame: Optional[FrameType]) -> None:
    sys.stderr.write(INTERRUPTED_LINE + "\n")
    sys.stderr.flush()
    os._exit(143 if signum == signal.SIGTERM else 130)


def install_for_command() -> None:
    """From here a signal unwinds (SIGINT as KeyboardInterrupt, SIGTERM as Terminated)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    install_sigterm()


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    # Further SIGTERMs (a supervisor that repeats it, Ray's own teardown) must not cut the
    # unwinding short: it is what stops Ray and leaves the output resumable.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(signum)


def install_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (the CLI calls this)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        _installed = True


def reinstall_sigterm() -> None:
    """After ``ray.init`` replaced the handler: put ours back, if the CLI asked for it."""
    if _installed:
        install_sigterm()


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while Ray starts or stops, then handle them with ours.

    ``ray.init`` and ``ray.shutdown`` swap signal handlers (Ray's C++ core aborts on
    SIGTERM with a stack dump; its Python handler exits 15; shutdown leaves the default):
    a signal in that window killed the build without a word. Blocked here, it waits until
    our handler is back, then unwinds like any other interrupt. Threads Ray starts inside
    inherit the mask, so the signal is always handled by the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        reinstall_sigterm()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def block_in_this_thread() -> None:
    """Call first thing in every helper thread: SIGINT and SIGTERM then always go to the main
    thread. A process-directed signal goes to any thread that does not block it; if that is
    a helper thread while the main thread holds signals around ``ray.init``, the handler
    in place at that moment (Ray's: exit 15) would run instead of ours."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def ignore_late_signals() -> None:
    """From here on the process only exits: a late SIGINT or SIGTERM must not replace its
    exit code (an uncaught KeyboardInterrupt during shutdown would end it with -2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def exit_code(exc: KeyboardInterrupt) -> int:
    return Terminated.exit_code if isinstance(exc, Terminated) else 130
