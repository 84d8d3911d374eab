"""The terminal view of a failover: one row per event, the key durations, the real-AWS projection."""

from __future__ import annotations

from collections.abc import Sequence

from .projection import LABEL, PATHS, REFERENCES, Projection
from .summary import Scenario, format_seconds, key_durations, shorten
from .timeline import Event, Timeline


def _header(timeline: Timeline, scenario: Scenario) -> list[str]:
    verdict = f" ({scenario.verdict})" if scenario.verdict else ""
    return [
        f"failover timeline: {scenario.name}",
        f"backend {scenario.backend} · zones {scenario.zones} · fault {scenario.fault} · "
        f"SLA {scenario.sla_seconds:g} s · verdict {scenario.outcome}{verdict}",
        f"t0 = {timeline.wall_of(0.0)} (UTC)",
        "",
    ]


def _event_rows(events: Sequence[Event]) -> list[str]:
    src_w = max([len("source"), *(len(e.source) for e in events)])
    name_w = max([len("event"), *(len(e.name) for e in events)])
    rows = [
        f"{'t+s':>9}  {'dur s':>7}  {'source':<{src_w}}  {'event':<{name_w}}  detail",
        f"{'-' * 9}  {'-' * 7}  {'-' * src_w}  {'-' * name_w}  {'-' * 6}",
    ]
    for e in events:
        dur = f"{e.duration:7.3f}" if e.is_span else " " * 7
        detail = shorten(("FAILED " if e.failed else "") + e.detail)
        rows.append(f"{e.t:9.3f}  {dur}  {e.source:<{src_w}}  {e.name:<{name_w}}  {detail}".rstrip())
    return rows


def render_table(timeline: Timeline, scenario: Scenario) -> str:
    """The terminal view: one row per event, then the key durations."""
    lines = _header(timeline, scenario) + _event_rows(timeline.events()) + ["", "key durations"]
    for k in key_durations(timeline, scenario.sla_seconds):
        lines.append(f"  {k.label:<30} {format_seconds(k.seconds):>11}  {k.note}".rstrip())
    return "\n".join(lines) + "\n"


def render_projection(projections: Sequence[Projection]) -> str:
    """The projection as text, labelled as such, with the published times it competes with."""
    if not projections:
        return ""
    columns = ("detection", "launch", "boot", "script", "total")
    lines = [
        f"real AWS — {LABEL} (SLA {projections[0].sla_seconds:g} s; sources: docs/latency-model.md)",
        f"path: {PATHS[projections[0].path]}",
        f"  {'fault':<13}" + "".join(f"{c:>13}" for c in columns) + "  verdict",
    ]
    for p in projections:
        cells = [f"{ph.low:.0f}-{ph.high:.0f} s" for ph in p.phases] + [f"{p.low:.0f}-{p.high:.0f} s"]
        lines.append(f"  {p.fault:<13}" + "".join(f"{c:>13}" for c in cells) + f"  {p.verdict}")
    lines.append("compare: " + "; ".join(f"{r.what} ~{r.seconds / 60:g} min" for r in REFERENCES))
    return "\n".join(lines) + "\n"
