"""No namespace outlives its run: this process's are closed at exit (SIGTERM and SIGHUP included), and a
new session removes those whose creating process died, since their processes and veths would linger.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .netns_command import run_command
from .netns_kill import KILL_DEADLINE, kill_until_gone
from .netns_names import PREFIX, list_namespaces

if TYPE_CHECKING:  # netns registers its namespaces here
    from .netns import Namespace

log = logging.getLogger(__name__)

live_namespaces: dict[str, Namespace] = {}
"""This process's open namespaces by name: ``Namespace`` adds itself on start and leaves on close."""
live_namespaces_lock = threading.Lock()


def _remove_by_name(name: str) -> None:
    def pids() -> list[int]:
        return [int(p) for p in run_command(["ip", "netns", "pids", name], check=False).stdout.decode().split()]

    kill_until_gone(name, pids, KILL_DEADLINE)
    run_command(["ip", "netns", "del", name], check=False)


def cleanup_all(prefix: str = PREFIX) -> list[str]:
    """Remove EVERY namespace starting with ``prefix``: kill its processes, delete it (its veths go too).

    This also removes namespaces of concurrently running harness processes; for start-of-session
    cleanup prefer ``cleanup_stale``. Returns the names removed.
    """
    with live_namespaces_lock:
        mine = [ns for name, ns in live_namespaces.items() if name.startswith(prefix)]
    for ns in mine:
        with contextlib.suppress(Exception):
            ns.close()
    names = list_namespaces(prefix)
    for name in names:
        _remove_by_name(name)
    if names:
        log.info("removed leftover namespaces: %s", " ".join(names))
    return [ns.name for ns in mine] + names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove ``natlab-<run>-*`` namespaces whose creating process (``<run>``, hex pid) is dead."""
    removed = []
    for name in list_namespaces(prefix):
        run = name[len(prefix) :].split("-", 1)[0]
        try:
            owner = int(run, 16)
        except ValueError:
            owner = -1
        if owner == os.getpid() or (owner > 0 and _pid_alive(owner)):
            continue
        _remove_by_name(name)
        removed.append(name)
    if removed:
        log.info("removed stale namespaces: %s", " ".join(removed))
    return removed


def close_all_live() -> None:
    """Close every namespace this process still has open (registered with atexit)."""
    with live_namespaces_lock:
        live = list(live_namespaces.values())
    for ns in live:
        try:
            ns.close()
        except Exception:  # keep closing the others
            log.exception("closing %s failed", ns.name)


atexit.register(close_all_live)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks and atexit cleanup still run.

    Call from the main thread (e.g. in ``pytest_configure``); SIGINT already raises
    KeyboardInterrupt. Handlers set by someone else are left alone.
    """
    for sig in signals:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_system_exit)


__all__ = [
    "cleanup_all",
    "cleanup_stale",
    "close_all_live",
    "install_signal_handlers",
    "live_namespaces",
    "live_namespaces_lock",
]
