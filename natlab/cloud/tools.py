"""Where the host tools of the data plane live (ip, nft, iptables, conntrack, sysctl...), whatever PATH says.

Debian puts ``nft``, ``iptables``, ``conntrack`` and ``sysctl`` in ``/usr/sbin`` (``/sbin`` before the
merged /usr), which an ordinary user's PATH (``/usr/local/bin:/usr/bin:/bin``) does not hold, so
the harness would fail with ``exec of "nft" failed`` although the tool is installed. Every command
the harness runs is looked up here: the caller's PATH first (a user's own build wins), then the
directories where the distribution packages install them. A tool that is in neither is missing,
and :func:`missing_reason` says which Debian package brings it (data-plane tests skip with that).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence

#: Searched after the caller's PATH, in this order.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: The Debian package that installs each tool the harness runs (scripts/bootstrap.sh installs them).
DEBIAN_PACKAGES = {
    "ip": "iproute2",
    "nft": "nftables",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "sysctl": "procps",
    "ping": "iputils-ping",
    "iperf3": "iperf3",
    "curl": "curl",
    "unshare": "util-linux",
    "mount": "mount",
}

#: What every network namespace of the data plane needs: links and routes, and the NAT rules.
DATAPLANE_TOOLS = ("ip", "nft")


class ToolNotFound(FileNotFoundError):
    """A command the harness runs is installed nowhere it looks; the message names its package."""


def search_path() -> str:
    """The caller's PATH followed by the system directories it lacks."""
    entries = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    entries += [directory for directory in SYSTEM_DIRS if directory not in entries]
    return os.pathsep.join(entries)


@functools.cache
def find(name: str) -> str | None:
    """The absolute path of the command ``name``, or None when it is not installed."""
    return shutil.which(name, path=search_path())


def tool(name: str) -> str:
    """The absolute path of the command ``name``; ToolNotFound (naming its package) when missing."""
    path = find(name)
    if path is None:
        raise ToolNotFound(missing_reason(name) or name)
    return path


def command(argv: Sequence[str]) -> list[str]:
    """``argv`` with its program made absolute (left as it is when it holds a slash or is missing)."""
    program, *args = argv
    if os.sep in program:
        return [program, *args]
    return [find(program) or program, *args]


def missing_reason(*names: str) -> str | None:
    """None when every tool in ``names`` is installed, else a sentence naming the missing ones (for skips)."""
    missing = [name for name in names if find(name) is None]
    if not missing:
        return None
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in missing})
    return (
        f"{', '.join(f'`{name}`' for name in missing)} not found on PATH or in {', '.join(SYSTEM_DIRS)}: "
        f"install the Debian package(s) {' '.join(packages)} (scripts/bootstrap.sh does, as root)"
    )


__all__ = [
    "DATAPLANE_TOOLS",
    "DEBIAN_PACKAGES",
    "SYSTEM_DIRS",
    "ToolNotFound",
    "command",
    "find",
    "missing_reason",
    "search_path",
    "tool",
]
