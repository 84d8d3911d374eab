"""Network sysctls of one namespace, read and written through ``/proc/sys`` from a thread inside it:
no ``sysctl`` process per setting, and the host's own values stay untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # netns imports write_proc_sys from here
    from .netns import Namespace


def write_proc_sys(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    path.write_text(f"{value}\n")


def _read_proc_sys(key: str) -> str:
    return (Path("/proc/sys") / key.replace(".", "/")).read_text().strip()


def set_sysctl(ns: Namespace, key: str, value: str | int) -> None:
    """Set a (network) sysctl such as ``net.ipv4.ip_forward`` inside ``ns`` (no process spawned).

    Keys name ``/proc/sys`` paths with dots; interface names containing dots are not supported.
    """
    ns.call(write_proc_sys, key, str(value))


def get_sysctl(ns: Namespace, key: str) -> str:
    """Read a (network) sysctl inside ``ns``."""
    return ns.call(_read_proc_sys, key)


__all__ = ["get_sysctl", "set_sysctl", "write_proc_sys"]
