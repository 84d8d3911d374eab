"""Whether network namespaces work on this host, asked once: tests skip and preflight refuses with the
reason, instead of failing half-way through building a lab.
"""

from __future__ import annotations

import functools
import os
import subprocess

from natlab.cloud import tools

from .netns_command import NamespaceError, run_command
from .netns_names import PREFIX, RUN_ID


@functools.cache
def unavailable_reason() -> str | None:
    """Return None when namespaces can be used here, else a sentence saying why not (for skips)."""
    missing = tools.missing_reason(*tools.DATAPLANE_TOOLS)
    if missing:
        return missing
    if os.geteuid() != 0:
        rootless = subprocess.run(
            tools.command(["unshare", "-Urnm", "true"]), capture_output=True, timeout=10, check=False
        )
        if rootless.returncode == 0:
            return (
                "not running as root: `ip netns` needs root; unprivileged user namespaces work "
                "here, so run through scripts/rootless.sh (as `make verify` does) or as root"
            )
        return (
            "not running as root and unprivileged user namespaces are unavailable "
            f"(`unshare -Urnm true`: {rootless.stderr.decode(errors='replace').strip()})"
        )
    probe = f"{PREFIX}probe-{RUN_ID}"
    try:
        run_command(["ip", "netns", "add", probe])
    except (NamespaceError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    run_command(["ip", "netns", "del", probe], check=False)
    return None


def namespaces_available() -> bool:
    """True when ``Namespace`` works here (see ``unavailable_reason`` for why not)."""
    return unavailable_reason() is None


__all__ = ["namespaces_available", "unavailable_reason"]
