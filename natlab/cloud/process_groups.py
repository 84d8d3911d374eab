"""Whether a process group still has a live member, read from ``/proc``: the end of a boot's helpers."""

from __future__ import annotations

import os
from pathlib import Path


def group_alive(pgid: int) -> bool:
    """True while a non-zombie process is in process group ``pgid``.

    Zombies are ignored: an orphaned helper (the script's ``tee``) is reparented to PID 1, which on
    some machines (a firecracker VM's init here) does not reap it for a long time.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
