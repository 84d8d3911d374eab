"""Killing every process in a namespace before it goes: a process left inside keeps the namespace, and
whatever it serves there, alive after its name is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from natlab.waiting import wait_until

log = logging.getLogger(__name__)

KILL_DEADLINE = 5.0


def kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def reap(procs: Sequence[subprocess.Popen[Any]], timeout: float = 0.0) -> None:
    for proc in procs:
        if proc.poll() is None and timeout:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)


def kill_until_gone(
    name: str, pids: Callable[[], list[int]], deadline: float, reap: Callable[[], None] = lambda: None
) -> None:
    """SIGKILL every PID in namespace ``name`` until none is left; warn if some survive ``deadline`` s."""

    def gone() -> bool:
        alive = pids()
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap()
        if alive:
            raise LookupError(f"processes survive SIGKILL: {alive}")
        return True

    try:
        wait_until(gone, what=f"exit of every process in namespace {name}", timeout=deadline, interval=0.01)
    except TimeoutError as error:
        log.warning("%s", error)


__all__ = ["KILL_DEADLINE", "kill_group", "kill_until_gone", "reap"]
