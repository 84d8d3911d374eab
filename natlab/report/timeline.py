"""A thread-safe record of what happened during one failover, on one clock.

Every part of the harness marks what it saw on a shared `Timeline`: the fault injector, the Auto
Scaling watcher, the router and probe threads. Times are `time.monotonic()` readings kept as seconds
since the timeline's t0; the wall clock read at t0 turns them back into UTC for display, and maps the
boot script's own log (UTC wall time, milliseconds) onto the same axis.

Well-known event names (the report computes its key durations from them):

| name                   | source        | marked by                                             |
| ---------------------- | ------------- | ----------------------------------------------------- |
| `fault-injected`       | `fault`       | the fault injector, when it kills/stops the NAT       |
| `replacement-launched` | `autoscaling` | whoever sees the ASG's new instance                   |
| `boot-started`         | `boot:<id>`   | `add_boot_log`, first line of the boot script         |
| `step:<name>` (span)   | `boot:<id>`   | `add_boot_log`, one per script step, start to done    |
| `boot-finished`        | `boot:<id>`   | `add_boot_log`, last `done` line when no step failed  |
| `boot-failed`          | `boot:<id>`   | `add_boot_log`, on a `step=<name> error` line         |
| `boot-note`            | `boot:<id>`   | `add_boot_log`, a log line outside any step           |
| `route-switched`       | `router`      | the route watcher, once the route targets the new ENI |
| `outage` (span)        | `probe`       | the data-plane probe, first lost to first answered    |
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from natlab.module import bootlog

FAULT_INJECTED = "fault-injected"
REPLACEMENT_LAUNCHED = "replacement-launched"
BOOT_STARTED = "boot-started"
BOOT_FINISHED = "boot-finished"
BOOT_FAILED = "boot-failed"
BOOT_NOTE = "boot-note"
ROUTE_SWITCHED = "route-switched"
OUTAGE = "outage"
STEP_PREFIX = "step:"

SOURCE_FAULT = "fault"
SOURCE_ASG = "autoscaling"
SOURCE_ROUTER = "router"
SOURCE_PROBE = "probe"
BOOT_SOURCE_PREFIX = "boot:"


def boot_source(instance_id: str) -> str:
    """The source name of one instance's boot-script events."""
    return f"{BOOT_SOURCE_PREFIX}{instance_id}"


def format_wall(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds, as the boot script writes it."""
    stamp = datetime.fromtimestamp(epoch, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_wall(stamp: str) -> float:
    """Epoch seconds of a boot-log timestamp such as `2026-11-26T21:50:01.123Z`."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Event:
    """One thing that happened: a point (`end is None`) or a span from `t` to `end`."""

    t: float
    name: str
    source: str
    detail: str = ""
    end: float | None = None
    failed: bool = False
    seq: int = 0

    @property
    def is_span(self) -> bool:
        return self.end is not None

    @property
    def finish(self) -> float:
        """When the event was over: `end` for a span, `t` for a point."""
        return self.t if self.end is None else self.end

    @property
    def duration(self) -> float:
        return self.finish - self.t


class Timeline:
    """Thread-safe event recorder; all times are seconds since t0 on the monotonic clock."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.t0 = clock()
        self.t0_wall = wall_clock()
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def _rel(self, at: float | None) -> float:
        return (self._clock() if at is None else at) - self.t0

    def _add(self, **fields: Any) -> Event:
        with self._lock:
            event = Event(seq=len(self._events), **fields)
            self._events.append(event)
        return event

    def mark(
        self, name: str, source: str, detail: str = "", at: float | None = None, *, wall: float | None = None
    ) -> Event:
        """Record a point event now, at `at` (a `time.monotonic()` reading taken earlier), or at
        `wall` (a `time.time()` reading, as the ASG controller and fleet events carry)."""
        if at is not None and wall is not None:
            raise ValueError("mark() takes `at` (monotonic) or `wall` (epoch), not both")
        t = self.wall_to_rel(wall) if wall is not None else self._rel(at)
        return self._add(t=t, name=name, source=source, detail=detail)

    def add_span(
        self,
        name: str,
        start: float,
        end: float,
        source: str,
        detail: str = "",
        failed: bool = False,
    ) -> Event:
        """Record a span between two `time.monotonic()` readings (e.g. a probe's outage)."""
        if end < start:
            raise ValueError(f"span {name!r} ends ({end}) before it starts ({start})")
        return self._add(
            t=self._rel(start),
            end=self._rel(end),
            name=name,
            source=source,
            detail=detail,
            failed=failed,
        )

    def wall_to_rel(self, epoch: float) -> float:
        """Seconds since t0 of a wall-clock (epoch) time."""
        return epoch - self.t0_wall

    def wall_of(self, rel: float) -> str:
        """UTC ISO time of a point on this timeline."""
        return format_wall(self.t0_wall + rel)

    def add_boot_log(self, instance_id: str, text: str, clock_offset: float = 0.0) -> list[Event]:
        """Turn a boot-script log into events: one span per step, plus started/finished/failed.

        `clock_offset` (seconds) is added to the log's wall times, for an instance whose clock
        differs from this host's; in the emulator it is 0. The log is read by `natlab.module.bootlog`
        (lines not in its format are ignored). Messages other than start/done/error are kept in
        the step's detail; lines without `step=` (e.g. `complete-lifecycle-action ABANDON`)
        become `boot-note` events.
        """
        lines = bootlog.parse(text)
        if not lines:
            return []
        source = boot_source(instance_id)

        def rel(when: datetime) -> float:
            return self.wall_to_rel(when.timestamp() + clock_offset)

        added = [self._add(t=rel(lines[0].time), name=BOOT_STARTED, source=source, detail=instance_id)]
        for line in lines:
            if line.step is None:
                added.append(self._add(t=rel(line.time), name=BOOT_NOTE, source=source, detail=line.message))
        runs = bootlog.steps(lines)
        for run in runs:
            end = rel(run.end or lines[-1].time)  # a running step lasts to the end of the log
            added += self._add_boot_step(run, source, start=end if run.start is None else rel(run.start), end=end)
        if all(run.status == bootlog.DONE for run in runs):
            finished = max([lines[0].time, *(run.end for run in runs if run.end is not None)])
            added.append(self._add(t=rel(finished), name=BOOT_FINISHED, source=source, detail=instance_id))
        return added

    def _add_boot_step(self, run: bootlog.BootStep, source: str, start: float, end: float) -> list[Event]:
        """The `step:<name>` span of one run of a step, after a `boot-failed` point if it failed."""
        notes = list(run.notes)
        added = []
        if run.status == bootlog.ERROR:
            notes.append(run.message)
            detail = f"step={run.name} {run.message}"
            added.append(self._add(t=end, name=BOOT_FAILED, source=source, detail=detail))
        elif run.status == bootlog.RUNNING:
            notes.append("no done line: unfinished")
        elif run.message != bootlog.DONE:  # "done <more>": keep the more
            notes.append(run.message.partition(" ")[2])
        span = self._add(
            t=start,
            end=end,
            name=f"{STEP_PREFIX}{run.name}",
            source=source,
            detail="; ".join(notes),
            failed=run.status != bootlog.DONE,
        )
        return [*added, span]

    def events(self) -> list[Event]:
        """All events, by start time (then by order recorded)."""
        with self._lock:
            return sorted(self._events, key=lambda e: (e.t, e.seq))

    def first(self, name: str, after: float | None = None, source: str | None = None) -> Event | None:
        """The earliest event called `name` starting at or after `after` (seconds since t0)."""
        for event in self.events():
            if (
                event.name == name
                and (after is None or event.t >= after)
                and (source is None or event.source == source)
            ):
                return event
        return None

    def span(self, start_name: str, end_name: str, after: float | None = None) -> float | None:
        """Seconds from the first `start_name` (at/after `after`) to the end of the first
        `end_name` that starts at or after it; None when either is missing."""
        start = self.first(start_name, after)
        if start is None:
            return None
        end = self.first(end_name, start.t)
        return None if end is None else end.finish - start.t

    def sources(self) -> list[str]:
        """Sources in order of first appearance."""
        return list(dict.fromkeys(e.source for e in self.events()))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: t0 wall time and every event with its UTC time."""
        return {
            "t0_wall": format_wall(self.t0_wall),
            "t0_epoch": self.t0_wall,
            "events": [
                {**asdict(e), "wall": self.wall_of(e.t), "duration": e.duration if e.is_span else None}
                for e in self.events()
            ],
        }

    @classmethod
    def from_events(cls, events: Iterable[Event], t0_wall: float) -> Timeline:
        """A timeline rebuilt from saved events (to re-render a report)."""
        timeline = cls(clock=lambda: 0.0, wall_clock=lambda: t0_wall)
        for event in events:
            timeline._add(**{k: v for k, v in asdict(event).items() if k != "seq"})
        return timeline
