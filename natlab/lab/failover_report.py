"""Writes one failover's timeline (table, SVG/HTML, JSON) with its real-AWS projection beside it."""

from __future__ import annotations

import contextlib
from pathlib import Path

from natlab.lab.failover import FailoverResult
from natlab.lab.lab import Lab
from natlab.report.export import write_report
from natlab.report.fault_matrix import FaultRow
from natlab.report.projection import ScriptMeasurement, project_all
from natlab.report.summary import Scenario
from natlab.report.table import render_projection, render_table


def report_failover(lab: Lab, result: FailoverResult, name: str) -> tuple[str, Path]:
    """The terminal text and the HTML path of one failover's report."""
    scenario = Scenario(
        name=name,
        backend=lab.backend.name,
        zones=len(lab.zones),
        fault=result.fault if result.fault != "impair" else "status-check",
        sla_seconds=result.sla,
        passed=not result.problems,
        verdict="; ".join(result.problems) or "route moved to the replacement's ENI",
    )
    projections = []
    elastic_ip = bool(lab.zones[result.zone].eip_allocation_id)
    with contextlib.suppress(Exception):  # no boot log (e.g. a boot that never started): no projection
        measured = ScriptMeasurement.from_timeline(result.timeline, result.new_instance, elastic_ip=elastic_ip)
        projections = project_all(measured, path=replacement_path(lab, result))
    html = write_report(lab.settings.report_dir, scenario, result.timeline, projections)
    text = render_table(result.timeline, scenario)
    if projections:
        text += "\n\n" + render_projection(projections)
    return f"{text}\n\n{result.summary()}\nreport: {html}", html


def failover_row(result: FailoverResult, name: str) -> FaultRow:
    """The fault-matrix row of one failover: the fault, whether the zone was served again, how fast."""
    outcome = "; ".join(result.problems) or f"served by {result.new_instance}"
    detail = ""
    if result.outage_seconds is not None:
        detail = (
            f"outage {result.outage_seconds:.2f} s, {result.datagrams_lost} datagrams lost, "
            f"established TCP {result.tcp_outcome}"
        )
    injected = f"{result.fault} the NAT of {result.zone}"
    return FaultRow(name, injected, outcome, not result.problems, result.seconds, detail)


def replacement_path(lab: Lab, result: FailoverResult) -> str:
    """How the replacement came to serve, as the projection names it (`natlab.report.projection.PATHS`)."""
    box = lab.sandbox(result.new_instance) if result.new_instance else None
    if box is not None and box.started_again:  # a prepared instance out of the warm pool
        return "warm-pool"
    return "cold-baked" if lab.settings.image == "baked" else "cold-default"
