"""The failover as one self-contained HTML page, from `templates/report.html.j2`.

The page holds the scenario, the SVG timeline inline, the key durations, every event and, when
given, the real-AWS projection with its sources. Autoescaping is on: event details come from boot
logs and CLI output, and the SVG is the only markup let through as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import jinja2

from .projection import LABEL, PATHS, REFERENCES, Projection
from .projection_sources import SOURCES
from .summary import Scenario, format_seconds, key_durations
from .svg import render_svg
from .timeline import Timeline

TEMPLATES = Path(__file__).parent / "templates"


class _Range(Protocol):
    low: float
    high: float


def low_high(item: _Range, digits: int = 0) -> str:
    """`low-high s` with an en dash between, for a projection, a phase or a figure."""
    return f"{item.low:.{digits}f}\u2013{item.high:.{digits}f} s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["seconds"] = format_seconds
    env.filters["low_high"] = low_high
    return env


_ENV = _environment()


def render_html(timeline: Timeline, scenario: Scenario, projections: Sequence[Projection] = ()) -> str:
    """One self-contained page: metadata, the SVG inline, key durations, events, projection."""
    return _ENV.get_template("report.html.j2").render(
        scenario=scenario,
        verdict_class={True: "pass", False: "fail", None: ""}[scenario.passed],
        t0=timeline.wall_of(0.0),
        wall=timeline.wall_of,
        svg=render_svg(timeline, scenario),
        keys=key_durations(timeline, scenario.sla_seconds),
        events=timeline.events(),
        projections=list(projections),
        label=LABEL,
        sources=SOURCES,
        paths=PATHS,
        references=REFERENCES if projections else (),
        source_keys=list(
            dict.fromkeys([key for p in projections for key in p.sources()] + [r.source for r in REFERENCES])
        ),
    )
