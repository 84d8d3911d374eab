"""What the harness's plugin does at the end of a run keeps pytest's own end-of-run checks working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CYCLE_TEST = """
class Loud:
    def __del__(self):
        raise RuntimeError("raised by a finaliser in a reference cycle")


def test_leaves_a_cycle_with_a_finaliser_that_raises():
    loud = Loud()
    loud.me = loud
"""


def test_an_unraisable_exception_in_garbage_left_at_the_end_is_still_reported(tmp_path: Path):
    # The plugin collects and freezes the heap before pytest's last collections (to spare them a
    # lab's heap): an object that only those would have found must still be found.
    (tmp_path / "test_cycle.py").write_text(CYCLE_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "natlab.pytest_plugin", "-p", "no:cacheprovider", "test_cycle.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "PytestUnraisableExceptionWarning" in output, output
    assert "raised by a finaliser in a reference cycle" in output, output
