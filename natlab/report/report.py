"""Show a person what happened in one failover: a terminal table, an SVG timeline, an HTML page.

`write_report` writes `<scenario>.html` (SVG + tables + real-AWS projection), `<scenario>.svg`,
`<scenario>.txt` (what `render_table` prints) and `<scenario>.json` (every event, for machines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import jinja2

from .projection import LABEL, SOURCES, Projection
from .timeline import (
    BOOT_FAILED,
    BOOT_NOTE,
    BOOT_SOURCE_PREFIX,
    BOOT_STARTED,
    FAULT_INJECTED,
    OUTAGE,
    REPLACEMENT_LAUNCHED,
    ROUTE_SWITCHED,
    SOURCE_ASG,
    SOURCE_FAULT,
    SOURCE_PROBE,
    SOURCE_ROUTER,
    STEP_PREFIX,
    Event,
    Timeline,
)


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


@dataclass(frozen=True)
class KeyDuration:
    label: str
    seconds: float | None
    note: str = ""


def key_durations(timeline: Timeline, sla_seconds: float) -> list[KeyDuration]:
    """Fault → launch → boot → route, each measured from the previous one along the failover."""
    fault = timeline.first(FAULT_INJECTED)
    after = fault.t if fault else None
    launched = timeline.first(REPLACEMENT_LAUNCHED, after)
    boot = timeline.first(BOOT_STARTED, launched.t if launched else after)
    route = timeline.first(ROUTE_SWITCHED, after)
    if route is None and boot is not None:  # no route watcher: the script's own routes step
        route = timeline.first(f"{STEP_PREFIX}routes", boot.t, source=boot.source)
        route = None if route is None or route.failed else route

    def between(a: Event | None, b: Event | None) -> float | None:
        return None if a is None or b is None else b.finish - a.t

    total = between(fault, route)
    if total is None:
        sla_note = f"SLA {sla_seconds:g} s: not measured"
    elif total <= sla_seconds:
        sla_note = f"SLA {sla_seconds:g} s: met ({100 * total / sla_seconds:.1f} % of budget)"
    else:
        sla_note = f"SLA {sla_seconds:g} s: MISSED by {total - sla_seconds:.3f} s"
    outages = [e for e in timeline.events() if e.name == OUTAGE and (after is None or e.finish >= after)]
    outage = sum(e.duration for e in outages) if outages else None
    outage_note = (
        "" if len(outages) < 2 else (f"{len(outages)} windows, longest {max(e.duration for e in outages):.3f} s")
    )
    return [
        KeyDuration("fault → replacement launched", between(fault, launched)),
        KeyDuration("launch → boot start", between(launched, boot)),
        KeyDuration("boot start → route switched", between(boot, route)),
        KeyDuration("fault → route switched", total, sla_note),
        KeyDuration("data-plane outage", outage, outage_note or ("" if outages else "no probe ran")),
    ]


def _fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.3f} s"


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(timeline: Timeline, scenario: Scenario) -> str:
    """The terminal view: one row per event, then the key durations."""
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}[scenario.passed]
    lines = [
        f"failover timeline: {scenario.name}",
        f"backend {scenario.backend} · zones {scenario.zones} · fault {scenario.fault} · "
        f"SLA {scenario.sla_seconds:g} s · verdict {verdict}" + (f" ({scenario.verdict})" if scenario.verdict else ""),
        f"t0 = {timeline.wall_of(0.0)} (UTC)",
        "",
    ]
    events = timeline.events()
    src_w = max([len("source"), *(len(e.source) for e in events)])
    name_w = max([len("event"), *(len(e.name) for e in events)])
    lines.append(f"{'t+s':>9}  {'dur s':>7}  {'source':<{src_w}}  {'event':<{name_w}}  detail")
    lines.append(f"{'-' * 9}  {'-' * 7}  {'-' * src_w}  {'-' * name_w}  {'-' * 6}")
    for e in events:
        dur = f"{e.duration:7.3f}" if e.is_span else " " * 7
        flag = "FAILED " if e.failed else ""
        lines.append(f"{e.t:9.3f}  {dur}  {e.source:<{src_w}}  {e.name:<{name_w}}  {_short(flag + e.detail)}".rstrip())
    lines += ["", "key durations"]
    for k in key_durations(timeline, scenario.sla_seconds):
        lines.append(f"  {k.label:<30} {_fmt(k.seconds):>11}  {k.note}".rstrip())
    return "\n".join(lines) + "\n"


def render_projection(projections: Sequence[Projection]) -> str:
    """The projection as text, labelled as such."""
    if not projections:
        return ""
    sla = projections[0].sla_seconds
    lines = [
        f"real AWS — {LABEL} (SLA {sla:g} s; sources: docs/latency-model.md)",
        f"  {'fault':<13}"
        + "".join(f"{p:>13}" for p in ("detection", "launch", "boot", "script", "total"))
        + "  verdict",
    ]
    for p in projections:
        cells = [f"{ph.low:.0f}-{ph.high:.0f} s" for ph in p.phases] + [f"{p.low:.0f}-{p.high:.0f} s"]
        lines.append(f"  {p.fault:<13}" + "".join(f"{c:>13}" for c in cells) + f"  {p.verdict}")
    return "\n".join(lines) + "\n"


# ---- SVG ---------------------------------------------------------------------------------

_WIDTH, _LEFT, _RIGHT, _TOP = 1100, 200, 40, 64
_BAR_H, _ROW_H, _LANE_PAD, _AXIS_H = 16, 15, 8, 44
_FONT, _CHAR_W = 12, 7.0  # DejaVu Sans at 12 px averages ~7 px per character
_STEP_COLOURS = ["#6baed6", "#74c476", "#9e9ac8", "#fdae6b", "#fd8d3c", "#31a354", "#756bb1", "#3182bd"]
_SOURCE_COLOURS = {
    SOURCE_FAULT: "#e6550d",
    SOURCE_ASG: "#3182bd",
    SOURCE_ROUTER: "#31a354",
    SOURCE_PROBE: "#636363",
}
_OUTAGE_COLOUR, _FAILED_COLOUR = "#d62728", "#d62728"
_STEP_ORDER = [
    "identity",
    "forwarding",
    "masquerade",
    "source-dest-check",
    "elastic-ip",
    "routes",
    "alarm",
    "lifecycle",
]


def _lane_title(source: str) -> str:
    if source.startswith(BOOT_SOURCE_PREFIX):
        return "boot " + source.removeprefix(BOOT_SOURCE_PREFIX)
    return {
        SOURCE_FAULT: "fault injector",
        SOURCE_ASG: "auto scaling",
        SOURCE_ROUTER: "router / data plane",
        SOURCE_PROBE: "probes",
    }.get(source, source)


def _lane_order(sources: list[str]) -> list[str]:
    rank = {SOURCE_FAULT: 0, SOURCE_ASG: 1, SOURCE_ROUTER: 3, SOURCE_PROBE: 4}
    return sorted(sources, key=lambda s: (2 if s.startswith(BOOT_SOURCE_PREFIX) else rank.get(s, 5), sources.index(s)))


def _nice_step(span: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 12:
            return step
    return 1200.0


def _colour(e: Event) -> str:
    if e.failed:
        return _FAILED_COLOUR
    if e.name == OUTAGE:
        return _OUTAGE_COLOUR
    if e.name.startswith(STEP_PREFIX):
        step = e.name.removeprefix(STEP_PREFIX)
        index = _STEP_ORDER.index(step) if step in _STEP_ORDER else sum(map(ord, step))
        return _STEP_COLOURS[index % len(_STEP_COLOURS)]
    return _SOURCE_COLOURS.get(e.source, "#8c6d31" if e.source.startswith(BOOT_SOURCE_PREFIX) else "#636363")


def _ink(colour: str) -> str:
    """Black or white text, whichever reads better on `colour` (#rrggbb)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _label(e: Event) -> str:
    if e.is_span:
        name = e.name.removeprefix(STEP_PREFIX)
        return f"{name} {e.duration:.2f} s" + (" ✗" if e.failed else "")
    if e.name in (BOOT_FAILED, BOOT_NOTE):  # what went wrong is the point of these
        return f"{e.name}: {_short(e.detail, 40)}"
    if e.detail and len(e.detail) <= 28 and not e.source.startswith(BOOT_SOURCE_PREFIX):
        return f"{e.name}: {e.detail}"
    return e.name


def render_svg(timeline: Timeline, scenario: Scenario) -> str:
    """A lane per source; spans as bars, points as diamonds, labels stacked so none overlap."""
    events = timeline.events()
    t_lo = min([0.0, *(e.t for e in events)])
    t_hi = max([t_lo + 1.0, *(e.finish for e in events)])
    pad = (t_hi - t_lo) * 0.02
    t_lo, t_hi = t_lo - pad, t_hi + pad
    plot_w = _WIDTH - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + (t - t_lo) / (t_hi - t_lo) * plot_w

    lanes = _lane_order(timeline.sources())
    backgrounds: list[str] = []
    body: list[str] = []
    y = _TOP
    for index, source in enumerate(lanes):
        rows: list[float] = []  # right edge of the last label in each label row
        placed = []
        for e in (e for e in events if e.source == source):
            x0, x1 = x(e.t), max(x(e.finish), x(e.t) + 2)
            text = _label(e)
            width = len(text) * _CHAR_W
            if e.is_span and x1 - x0 >= width + 8:  # fits inside its bar
                placed.append((e, x0, x1, text, x0 + 4, "start", -1))
                continue
            lx, anchor = x0, "start"
            if lx + width > _WIDTH - 4:
                lx, anchor = x1, "end"
            left = lx - width if anchor == "end" else lx
            row = next((i for i, edge in enumerate(rows) if left > edge + 6), len(rows))
            if row == len(rows):
                rows.append(0.0)
            rows[row] = left + width
            placed.append((e, x0, x1, text, lx, anchor, row))
        height = _LANE_PAD * 2 + _BAR_H + max(1, len(rows)) * _ROW_H
        fill = "#f4f4f4" if index % 2 == 0 else "#ffffff"
        backgrounds.append(f'<rect x="0" y="{y:.1f}" width="{_WIDTH}" height="{height}" fill="{fill}"/>')
        title = escape(_lane_title(source))
        body.append(f'<text x="12" y="{y + _LANE_PAD + _BAR_H - 3:.1f}" class="lane">{title}</text>')
        bar_y = y + _LANE_PAD
        for e, x0, x1, text, lx, anchor, row in placed:
            colour = _colour(e)
            tip = (
                f"{e.name} · t+{e.t:.3f} s"
                + (f" · {e.duration:.3f} s" if e.is_span else "")
                + (f" · {e.detail}" if e.detail else "")
            )
            label_y = bar_y + _BAR_H + (row + 1) * _ROW_H - 3
            parts = [f"<title>{escape(tip)}</title>"]
            halo = f'stroke="{fill}" stroke-width="3" paint-order="stroke"'
            if row < 0:
                label_y, halo = bar_y + _BAR_H - 4, f'fill="{_ink(colour)}"'
            if e.is_span:
                parts.append(
                    f'<rect x="{x0:.1f}" y="{bar_y:.1f}" width="{x1 - x0:.1f}" height="{_BAR_H}" '
                    f'fill="{colour}" rx="2"/>'
                )
            else:
                cy = bar_y + _BAR_H / 2
                parts.append(
                    f'<path d="M{x0:.1f},{cy - 7:.1f} L{x0 + 6:.1f},{cy:.1f} L{x0:.1f},{cy + 7:.1f} '
                    f'L{x0 - 6:.1f},{cy:.1f} Z" fill="{colour}" stroke="#ffffff" stroke-width="1"/>'
                )
            if row >= 0:
                parts.append(
                    f'<line x1="{lx:.1f}" y1="{bar_y + _BAR_H:.1f}" x2="{lx:.1f}" '
                    f'y2="{label_y - _FONT + 2:.1f}" stroke="{colour}" stroke-width="1"/>'
                )
            weight = ' font-weight="bold"' if e.failed or e.name == OUTAGE else ""
            parts.append(
                f'<text x="{lx:.1f}" y="{label_y:.1f}" text-anchor="{anchor}" {halo}{weight}>{escape(text)}</text>'
            )
            body.append(
                f'<g class="event" data-name={quoteattr(e.name)} data-source={quoteattr(e.source)}>'
                + "".join(parts)
                + "</g>"
            )
        y += height
    plot_bottom = y

    # axis and grid
    axis: list[str] = []
    step = _nice_step(t_hi - t_lo)
    tick = (int(t_lo / step) - (t_lo < 0)) * step
    while tick <= t_hi:
        if tick >= t_lo:
            tx = x(tick)
            axis.append(f'<line x1="{tx:.1f}" y1="{_TOP}" x2="{tx:.1f}" y2="{plot_bottom + 5:.1f}" class="grid"/>')
            axis.append(f'<text x="{tx:.1f}" y="{plot_bottom + 19:.1f}" text-anchor="middle">{tick:g}</text>')
        tick = round(tick + step, 6)
    axis.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{plot_bottom + 37:.1f}" text-anchor="middle">'
        f"seconds since t0 = {escape(timeline.wall_of(0.0))}</text>"
    )

    # guides: when the fault hit and when the route moved
    guides: list[str] = []
    keys = {k.label: k for k in key_durations(timeline, scenario.sla_seconds)}
    fault = timeline.first(FAULT_INJECTED)
    marks = []
    if fault:
        marks.append((fault.t, "fault", _SOURCE_COLOURS[SOURCE_FAULT]))
        total = keys["fault → route switched"].seconds
        if total is not None:
            marks.append((fault.t + total, "route switched", _SOURCE_COLOURS[SOURCE_ROUTER]))
    for t, text, colour in marks:
        gx = x(t)
        guides.append(
            f'<line x1="{gx:.1f}" y1="{_TOP - 6}" x2="{gx:.1f}" y2="{plot_bottom:.1f}" stroke="{colour}" '
            f'stroke-width="1.5" stroke-dasharray="5,4"/>'
        )
        guides.append(
            f'<text x="{gx:.1f}" y="{_TOP - 10}" text-anchor="middle" fill="{colour}" '
            f'font-weight="bold">{escape(text)}</text>'
        )

    total = keys["fault → route switched"]
    subtitle = (
        f"{scenario.backend} · {scenario.zones} zone(s) · fault {scenario.fault} · "
        f"fault → route switched {_fmt(total.seconds)} ({total.note})"
    )
    height = plot_bottom + _AXIS_H
    return (
        "\n".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height:.0f}" '
                f'viewBox="0 0 {_WIDTH} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" '
                f'font-size="{_FONT}" fill="#222222">',
                "<style>.lane{font-weight:bold}.grid{stroke:#d0d0d0;stroke-width:1}</style>",
                f'<rect width="{_WIDTH}" height="{height:.0f}" fill="#ffffff"/>',
                f'<text x="12" y="20" font-size="15" font-weight="bold">{escape(scenario.name)}</text>',
                f'<text x="12" y="38">{escape(subtitle)}</text>',
                *backgrounds,
                *axis,
                *body,
                *guides,
                f'<line x1="{_LEFT}" y1="{plot_bottom:.1f}" x2="{_WIDTH - _RIGHT}" '
                f'y2="{plot_bottom:.1f}" stroke="#444"/>',
                "</svg>",
            ]
        )
        + "\n"
    )


# ---- HTML and JSON ------------------------------------------------------------------------

_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>failover: {{ s.name }}</title>
<style>
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1140px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{color:#31a354;font-weight:bold}.fail{color:#d62728;font-weight:bold}.failed td{color:#d62728}
.label{background:#fff3cd;border:1px solid #e0c36a;padding:2px 8px;font-weight:bold}
</style></head><body>
<h1>Failover: {{ s.name }}</h1>
<table>
<tr><th>backend</th><td>{{ s.backend }}</td></tr><tr><th>zones</th><td>{{ s.zones }}</td></tr>
<tr><th>fault</th><td>{{ s.fault }}</td></tr><tr><th>SLA</th><td>{{ "%g" % s.sla_seconds }} s</td></tr>
<tr><th>verdict</th><td class="{{ verdict_class }}">{{ verdict }}
  {%- if s.verdict %} ({{ s.verdict }}){% endif %}</td></tr>
<tr><th>t0</th><td>{{ t0 }}</td></tr>
</table>
<h2>Timeline (emulated run)</h2>
{{ svg | safe }}
<h2>Key durations</h2>
<table>{% for k in keys %}
<tr><th>{{ k.label }}</th><td class="n">{{ fmt(k.seconds) }}</td><td>{{ k.note }}</td></tr>
{%- endfor %}</table>
<h2>Events</h2>
<table><tr><th>t+s</th><th>UTC</th><th>duration</th><th>source</th><th>event</th><th>detail</th></tr>
{%- for e in events %}
<tr{% if e.failed %} class="failed"{% endif %}><td class="n">{{ "%.3f" % e.t }}</td><td>{{ wall(e.t) }}</td>
<td class="n">{{ fmt(e.duration) if e.is_span }}</td><td>{{ e.source }}</td><td>{{ e.name }}</td>
<td>{{ e.detail }}</td></tr>
{%- endfor %}</table>
{% if projections %}
<h2>Same failover on real AWS <span class="label">{{ label }}</span></h2>
<p>The script work measured in this run plus modelled AWS figures: a best and a worst case, not a
distribution. The model and its sources: <code>docs/latency-model.md</code>.</p>
<table><tr><th>fault</th>{% for ph in projections[0].phases %}<th>{{ ph.name }}</th>{% endfor %}
<th>total</th><th>SLA {{ "%g" % projections[0].sla_seconds }} s</th></tr>
{%- for p in projections %}
<tr><th>{{ p.fault }}</th>{% for ph in p.phases %}<td class="n">{{ rng(ph) }}</td>{% endfor %}
<td class="n"><b>{{ rng(p) }}</b></td>
<td class="{{ 'pass' if p.verdict == 'within SLA' else 'fail' }}">{{ p.verdict }}</td></tr>
{%- endfor %}</table>
{% for p in projections %}<details><summary>{{ p.fault }}: how the range is built</summary><table>
{%- for ph in p.phases %}{% for f in ph.figures %}
<tr><td>{{ ph.name }}</td><td>{{ f.what }}</td><td class="n">{{ rng(f, 2) }}</td>
<td>[{{ source_numbers[f.source] }}]</td></tr>
{%- endfor %}{% endfor %}</table></details>
{% endfor %}
<h3>Sources</h3><ol>{% for key in source_keys %}<li>{{ sources[key] }}</li>{% endfor %}</ol>
{% endif %}
<p>Machine-readable: <a href="{{ s.slug }}.json">{{ s.slug }}.json</a>;
SVG alone: <a href="{{ s.slug }}.svg">{{ s.slug }}.svg</a></p>
</body></html>
""")


def _range(item: Any, digits: int = 0) -> str:
    """`low-high s` with an en dash, for anything with `low` and `high`."""
    return f"{item.low:.{digits}f}\u2013{item.high:.{digits}f} s"


def render_html(timeline: Timeline, scenario: Scenario, projections: Sequence[Projection] = ()) -> str:
    """One self-contained page: metadata, the SVG inline, key durations, events, projection."""
    source_keys = list(dict.fromkeys(k for p in projections for k in p.sources()))
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}[scenario.passed]
    return _HTML.render(
        s=scenario,
        t0=timeline.wall_of(0.0),
        svg=render_svg(timeline, scenario),
        keys=key_durations(timeline, scenario.sla_seconds),
        events=timeline.events(),
        wall=timeline.wall_of,
        fmt=_fmt,
        rng=_range,
        verdict=verdict,
        verdict_class={True: "pass", False: "fail", None: ""}[scenario.passed],
        projections=list(projections),
        label=LABEL,
        sources=SOURCES,
        source_keys=source_keys,
        source_numbers={k: i + 1 for i, k in enumerate(source_keys)},
    )


def _projection_dict(p: Projection) -> dict[str, Any]:
    return {
        "label": LABEL,
        "fault": p.fault,
        "sla_seconds": p.sla_seconds,
        "low": p.low,
        "high": p.high,
        "verdict": p.verdict,
        "phases": [
            {"name": ph.name, "low": ph.low, "high": ph.high, "figures": [asdict(f) for f in ph.figures]}
            for ph in p.phases
        ],
        "sources": {k: SOURCES[k] for k in p.sources()},
    }


def render_json(timeline: Timeline, scenario: Scenario, projections: Sequence[Projection] = ()) -> str:
    """Events, key durations and projection as JSON."""
    return (
        json.dumps(
            {
                "scenario": asdict(scenario),
                **timeline.as_dict(),
                "key_durations": [asdict(k) for k in key_durations(timeline, scenario.sla_seconds)],
                "projection": [_projection_dict(p) for p in projections],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def write_report(
    report_dir: Path | str, scenario: Scenario, timeline: Timeline, projection: Sequence[Projection] = ()
) -> Path:
    """Write `<slug>.html/.svg/.txt/.json` into `report_dir`; return the HTML page's path."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = scenario.slug
    (out / f"{base}.svg").write_text(render_svg(timeline, scenario), encoding="utf-8")
    text = render_table(timeline, scenario)
    if projection:
        text += "\n" + render_projection(projection)
    (out / f"{base}.txt").write_text(text, encoding="utf-8")
    (out / f"{base}.json").write_text(render_json(timeline, scenario, projection), encoding="utf-8")
    page = out / f"{base}.html"
    page.write_text(render_html(timeline, scenario, projection), encoding="utf-8")
    return page
