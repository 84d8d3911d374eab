"""A failover report on disk: the JSON for machines, and `write_report`, which writes every view.

`write_report` writes `<slug>.html` (SVG + tables + real-AWS projection), `<slug>.svg`,
`<slug>.txt` (what `render_table` prints, plus the projection) and `<slug>.json` (every event).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .page import render_html
from .projection import LABEL, REFERENCES, Projection
from .projection_sources import SOURCES
from .summary import Scenario, key_durations
from .svg import render_svg
from .table import render_projection, render_table
from .timeline import Timeline


def _projection_dict(p: Projection) -> dict[str, Any]:
    return {
        "label": LABEL,
        "fault": p.fault,
        "path": p.path,
        "sla_seconds": p.sla_seconds,
        "low": p.low,
        "high": p.high,
        "verdict": p.verdict,
        "phases": [
            {"name": ph.name, "low": ph.low, "high": ph.high, "figures": [asdict(f) for f in ph.figures]}
            for ph in p.phases
        ],
        "sources": {k: SOURCES[k] for k in p.sources()},
        "compare": [asdict(r) | {"source_text": SOURCES[r.source]} for r in REFERENCES],
    }


def render_json(timeline: Timeline, scenario: Scenario, projections: Sequence[Projection] = ()) -> str:
    """Events, key durations and projection as JSON."""
    report = {
        "scenario": asdict(scenario),
        **timeline.as_dict(),
        "key_durations": [asdict(k) for k in key_durations(timeline, scenario.sla_seconds)],
        "projection": [_projection_dict(p) for p in projections],
    }
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def write_report(
    report_dir: Path | str, scenario: Scenario, timeline: Timeline, projection: Sequence[Projection] = ()
) -> Path:
    """Write `<slug>.html/.svg/.txt/.json` into `report_dir`; return the HTML page's path."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = render_table(timeline, scenario)
    if projection:
        text += "\n" + render_projection(projection)
    files = {
        ".svg": render_svg(timeline, scenario),
        ".txt": text,
        ".json": render_json(timeline, scenario, projection),
        ".html": render_html(timeline, scenario, projection),
    }
    for suffix, content in files.items():
        (out / f"{scenario.slug}{suffix}").write_text(content, encoding="utf-8")
    return out / f"{scenario.slug}.html"
