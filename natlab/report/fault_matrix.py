"""The fault matrix: every fault a run injected, what came of it and how long recovery took.

Scenarios add a row each (``record_fault`` fixture, or ``record_failover`` for a failover); the
rows travel with the test reports (xdist workers too) and the run prints them as one table at the
end and writes ``fault-matrix.json`` and ``fault-matrix.html`` into the report folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

#: The ``user_properties`` key a row travels under.
PROPERTY = "natlab-fault-row"
JSON_FILE = "fault-matrix.json"
HTML_FILE = "fault-matrix.html"


@dataclass(frozen=True)
class FaultRow:
    """One injected fault: what, where, the outcome, and fault -> recovered (None: not measured)."""

    scenario: str
    injected: str
    outcome: str
    passed: bool
    recovery_seconds: float | None = None
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    """What a scenario counted, by name (flows survived/reset/hung, datagrams lost): kept as numbers in the JSON."""

    def counts_text(self) -> str:
        """``survived 0, reset 300, hung 0``: the counts in the order they were given."""
        return ", ".join(f"{name} {value}" for name, value in self.counts.items())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FaultRow:
        return cls(**json.loads(text))


def rows_from_properties(properties: Iterable[tuple[str, object]], passed: bool) -> list[FaultRow]:
    """The rows a test recorded; a row of a test that failed is marked failed whatever it said."""
    rows = [FaultRow.from_json(str(value)) for key, value in properties if key == PROPERTY]
    return [row if passed else FaultRow(**(asdict(row) | {"passed": False})) for row in rows]


def _recovery(row: FaultRow) -> str:
    return "—" if row.recovery_seconds is None else f"{row.recovery_seconds:.2f} s"


def render_text(rows: Sequence[FaultRow]) -> str:
    """The table as the terminal shows it."""
    headers = ("scenario", "injected", "outcome", "recovery", "verdict", "counts")
    cells = [
        (r.scenario, r.injected, r.outcome, _recovery(r), "ok" if r.passed else "FAILED", r.counts_text()) for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(c) for c in cells])


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>natlab fault matrix</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}
.ok{color:#186a3b}.failed{color:#a93226;font-weight:bold}.n{text-align:right}</style></head>
<body><h1>Fault matrix</h1>
<p>{{ rows | length }} faults injected; {{ rows | rejectattr("passed") | list | length }} not survived.
Recovery is fault &rarr; served again, measured in the lab (not a projection).</p>
<table><tr><th>scenario</th><th>injected</th><th>outcome</th><th>recovery</th><th>verdict</th><th>counts</th><th>detail</th></tr>
{%- for r in rows %}
<tr><td>{{ r.scenario }}</td><td>{{ r.injected }}</td><td>{{ r.outcome }}</td>
<td class="n">{{ "—" if r.recovery_seconds is none else "%.2f s" | format(r.recovery_seconds) }}</td>
<td class="{{ 'ok' if r.passed else 'failed' }}">{{ "ok" if r.passed else "FAILED" }}</td>
<td>{{ r.counts_text() }}</td><td>{{ r.detail }}</td></tr>
{%- endfor %}
</table></body></html>
"""
)


def write(report_dir: Path, rows: Sequence[FaultRow]) -> Path:
    """``fault-matrix.json`` and ``fault-matrix.html`` in ``report_dir``; the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / JSON_FILE).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    page = report_dir / HTML_FILE
    page.write_text(_PAGE.render(rows=rows))
    return page
