"""What a benchmark records about the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_description() -> str:
    """The CPU, how many of it, and the kernel: the ``machine`` field of a benchmark's results."""
    return f"{cpu_model()} (nproc {os.cpu_count()}), kernel {platform.release()}"


def write_results(path: Path, results: dict[str, Any]) -> None:
    """A benchmark's results as indented JSON at ``path`` (its folder made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
