"""Running Python code inside a namespace from this process: a thread ``setns()``-es in, so sockets
are made there without spawning anything, and the rest of the process stays in the host namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000

_T = TypeVar("_T")
_libc = ctypes.CDLL(None, use_errno=True)


def call_in_netns(path: str | os.PathLike[str], fn: Callable[..., _T], *args: Any) -> _T:
    """Call ``fn(*args)`` on a fresh thread that has ``setns()``-ed into the namespace at ``path``.

    Only that thread changes namespace (it exits afterwards); the rest of the process stays in the
    host namespace. Sockets created by ``fn`` stay in the namespace they were created in.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn(*args))
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name=f"setns-{Path(path).name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


__all__ = ["call_in_netns"]
