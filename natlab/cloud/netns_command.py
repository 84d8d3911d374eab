"""The host commands (``ip``) behind every namespace step: a failure names the command and its stderr,
so a broken step reads in the test log instead of as a bare exit status.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from natlab.cloud import tools

IP_TIMEOUT = 10.0


class NamespaceError(RuntimeError):
    """A namespace operation failed (the message carries the command and its stderr)."""


def run_command(
    argv: Sequence[str], *, timeout: float = IP_TIMEOUT, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short host command, capturing output; raise NamespaceError with stderr on failure."""
    try:
        return subprocess.run(tools.command(argv), check=check, timeout=timeout, capture_output=True, input=input)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip()
        raise NamespaceError(f"{' '.join(argv)!s} failed ({exc.returncode}): {stderr}") from exc


__all__ = ["IP_TIMEOUT", "NamespaceError", "run_command"]
