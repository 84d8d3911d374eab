"""What a failover report is about: the scenario that was run and the durations that matter.

Every view (the text table, the SVG, the HTML page, the JSON) starts from these: `Scenario` says
what was run and what the test concluded; `key_durations` walks the failover fault → launch →
boot → route on a `Timeline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .timeline import (
    BOOT_STARTED,
    FAULT_INJECTED,
    OUTAGE,
    REPLACEMENT_LAUNCHED,
    ROUTE_SWITCHED,
    STEP_PREFIX,
    Event,
    Timeline,
)

FAULT_TO_ROUTE = "fault → route switched"


@dataclass(frozen=True)
class Scenario:
    """What was run and what the test concluded."""

    name: str
    backend: str
    zones: int
    fault: str = "terminate"
    sla_seconds: float = 180.0
    passed: bool | None = None
    verdict: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-") or "scenario"

    @property
    def outcome(self) -> str:
        """PASS, FAIL or n/a (not judged)."""
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class KeyDuration:
    label: str
    seconds: float | None
    note: str = ""


def format_seconds(seconds: float | None) -> str:
    """`1.234 s`, or a dash when there is nothing to show."""
    return "—" if seconds is None else f"{seconds:.3f} s"


def shorten(text: str, width: int = 80) -> str:
    """`text` cut to `width` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _route_switched(timeline: Timeline, after: float | None, boot: Event | None) -> Event | None:
    """The route watcher's mark; without a watcher, the replacement script's own routes step."""
    route = timeline.first(ROUTE_SWITCHED, after)
    if route is None and boot is not None:
        route = timeline.first(f"{STEP_PREFIX}routes", boot.t, source=boot.source)
        route = None if route is None or route.failed else route
    return route


def _sla_note(total: float | None, sla_seconds: float) -> str:
    if total is None:
        return f"SLA {sla_seconds:g} s: not measured"
    if total <= sla_seconds:
        return f"SLA {sla_seconds:g} s: met ({100 * total / sla_seconds:.1f} % of budget)"
    return f"SLA {sla_seconds:g} s: MISSED by {total - sla_seconds:.3f} s"


def _outage(timeline: Timeline, after: float | None) -> KeyDuration:
    """All probe outage windows from the fault on, added up."""
    outages = [e for e in timeline.events() if e.name == OUTAGE and (after is None or e.finish >= after)]
    if not outages:
        return KeyDuration("data-plane outage", None, "no probe ran")
    longest = max(e.duration for e in outages)
    note = f"{len(outages)} windows, longest {longest:.3f} s" if len(outages) > 1 else ""
    return KeyDuration("data-plane outage", sum(e.duration for e in outages), note)


def key_durations(timeline: Timeline, sla_seconds: float) -> list[KeyDuration]:
    """Fault → launch → boot → route, each measured from the previous one along the failover."""
    fault = timeline.first(FAULT_INJECTED)
    after = fault.t if fault else None
    launched = timeline.first(REPLACEMENT_LAUNCHED, after)
    boot = timeline.first(BOOT_STARTED, launched.t if launched else after)
    route = _route_switched(timeline, after, boot)

    def between(a: Event | None, b: Event | None) -> float | None:
        return None if a is None or b is None else b.finish - a.t

    total = between(fault, route)
    return [
        KeyDuration("fault → replacement launched", between(fault, launched)),
        KeyDuration("launch → boot start", between(launched, boot)),
        KeyDuration("boot start → route switched", between(boot, route)),
        KeyDuration(FAULT_TO_ROUTE, total, _sla_note(total, sla_seconds)),
        _outage(timeline, after),
    ]


def fault_to_route(timeline: Timeline, sla_seconds: float) -> KeyDuration:
    """The one duration the SLA is about."""
    return next(k for k in key_durations(timeline, sla_seconds) if k.label == FAULT_TO_ROUTE)
