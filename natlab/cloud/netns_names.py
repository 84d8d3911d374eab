"""How the harness names its namespaces: so a run can tell its own from those a dead run left behind.

Every namespace the harness creates is named ``natlab-<run>-<suffix>`` where ``<run>`` is the
creating process id in hex, so a later run can tell its own namespaces from the leftovers of a run
that died (``netns_cleanup.cleanup_stale``) without touching a concurrent pytest-xdist worker's namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "natlab-"
"""Every namespace the harness creates starts with this."""

RUN_ID = f"{os.getpid():x}"
"""This process's part of namespace names (hex pid: tells live runs from dead ones)."""

NETNS_DIR = Path("/run/netns")


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing namespaces starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


__all__ = ["NETNS_DIR", "PREFIX", "RUN_ID", "list_namespaces"]
