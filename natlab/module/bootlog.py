"""The one parser of the boot script's log (``userdata/nat-boot.sh``, its ``log`` and ``step`` functions).

The script writes one line per event, UTC with milliseconds::

    2026-11-26T21:50:01.123Z nat-boot: step=routes start
    2026-11-26T21:50:01.987Z nat-boot: step=routes rtb-1 -> eni-2
    2026-11-26T21:50:02.456Z nat-boot: step=routes done
    2026-11-26T21:50:02.460Z nat-boot: step=alarm error line=197 status=254

``step()`` brackets each step with ``start`` and ``done``; the ERR trap logs ``error ...`` for the
step that failed (``setup`` when it failed before the first step). Everything else a step logs is a
note of that step. Lines without ``step=`` are accepted too (notes outside any step); lines not in
this format (shell noise, CLI output on the console) are ignored.

``parse`` reads the lines, ``steps`` pairs them into one ``BootStep`` per run of a step; the sandbox's
step times and the report's timeline events are both derived from these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+nat-boot:\s+"
    r"(?:step=(?P<step>\S+)\s*)?(?P<message>.*?)\s*$"
)

DONE = "done"
ERROR = "error"
RUNNING = "running"


@dataclass(frozen=True)
class BootLine:
    """One ``nat-boot:`` line: when (UTC), which step (None outside any step), and what it says."""

    time: datetime
    step: str | None
    message: str

    @property
    def verb(self) -> str:
        """The message's first word: ``start``, ``done`` and ``error`` bracket a step."""
        return self.message.partition(" ")[0]


@dataclass(frozen=True)
class BootStep:
    """One run of a step, from its ``start`` line to its ``done``/``error`` line.

    ``start`` is None when the closing line had no start line (an error in ``setup``); ``end`` is
    None while the step runs (no closing line yet). ``message`` is the closing line's message,
    ``notes`` what the step logged in between.
    """

    name: str
    start: datetime | None
    end: datetime | None
    status: str
    """``done`` | ``error`` | ``running``"""
    message: str = ""
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float | None:
        """Duration, when the step started and ended."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


def parse(text: str) -> list[BootLine]:
    """The ``nat-boot:`` lines of ``text``, in order; other lines are skipped."""
    lines = []
    for raw in text.splitlines():
        if match := _LINE.match(raw.strip()):
            when = datetime.fromisoformat(match["time"])
            lines.append(BootLine(when, match["step"], match["message"]))
    return lines


def steps(lines: Iterable[BootLine]) -> list[BootStep]:
    """Every run of a step, in the order the runs began (``running`` if never closed).

    A ``done``/``error`` line without a ``start`` is a run of its own (``start`` None). Notes of a
    step that is not running (e.g. ``step=ready NAT ready``) belong to no run and are dropped.
    """
    runs: list[BootStep] = []
    running: dict[str, int] = {}  # step name -> its index in runs
    for line in lines:
        if line.step is None:
            continue
        if line.verb == "start":
            running[line.step] = len(runs)
            runs.append(BootStep(line.step, line.time, None, RUNNING))
        elif line.verb in (DONE, ERROR):
            index = running.pop(line.step, None)
            if index is None:
                runs.append(BootStep(line.step, None, line.time, line.verb, line.message))
            else:
                runs[index] = replace(runs[index], end=line.time, status=line.verb, message=line.message)
        elif line.step in running:
            index = running[line.step]
            runs[index] = replace(runs[index], notes=(*runs[index].notes, line.message))
    return runs


def step_times(text: str) -> dict[str, BootStep]:
    """Each step's latest run, keyed by name in the order the steps first appear in the log."""
    return {run.name: run for run in steps(parse(text))}
