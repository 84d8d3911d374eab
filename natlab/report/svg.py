"""The failover as a picture: a lane per source, spans as bars, points as diamonds.

`layout.py` decides where everything goes; this module draws it: lane backgrounds, the time axis
and grid, the events (coloured by kind, boot steps in the order the log shows them), the fault and
route-switched guides, and the `<svg>` document around them (`render_svg`).
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from .layout import AXIS_H, BAR_H, FONT, LEFT, PLOT_W, RIGHT, ROW_H, TOP, WIDTH, Lane, Placed, Scale, layout
from .summary import Scenario, fault_to_route, format_seconds
from .timeline import (
    BOOT_SOURCE_PREFIX,
    FAULT_INJECTED,
    OUTAGE,
    SOURCE_ASG,
    SOURCE_FAULT,
    SOURCE_PROBE,
    SOURCE_ROUTER,
    STEP_PREFIX,
    Event,
    Timeline,
)

STEP_COLOURS = ("#6baed6", "#74c476", "#9e9ac8", "#fdae6b", "#fd8d3c", "#31a354", "#756bb1", "#3182bd")
SOURCE_COLOURS = {SOURCE_FAULT: "#e6550d", SOURCE_ASG: "#3182bd", SOURCE_ROUTER: "#31a354", SOURCE_PROBE: "#636363"}
BOOT_COLOUR, OTHER_COLOUR, ALERT_COLOUR = "#8c6d31", "#636363", "#d62728"  # alert: outages, failed steps

_LANE_TITLES = {
    SOURCE_FAULT: "fault injector",
    SOURCE_ASG: "auto scaling",
    SOURCE_ROUTER: "router / data plane",
    SOURCE_PROBE: "probes",
}


# ---- markup ------------------------------------------------------------------------------


def _value(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)  # pixels to 0.1


def _attrs(attrs: dict[str, object]) -> str:
    """`class_="x", stroke_width=1.5` → ` class="x" stroke-width="1.5"`."""
    return "".join(f" {key.rstrip('_').replace('_', '-')}={quoteattr(_value(v))}" for key, v in attrs.items())


def _tag(name: str, text: str | None = None, /, **attrs: object) -> str:
    """One element, its text escaped; empty (`<name .../>`) without text."""
    return f"<{name}{_attrs(attrs)}/>" if text is None else f"<{name}{_attrs(attrs)}>{escape(text)}</{name}>"


def _group(children: Iterable[str], /, **attrs: object) -> str:
    return f"<g{_attrs(attrs)}>" + "".join(children) + "</g>"


# ---- colours -----------------------------------------------------------------------------


def step_colours(timeline: Timeline) -> dict[str, str]:
    """A colour per boot step, given out in the order the steps first appear in the boot logs,
    so the same run always gets the same colours and a renamed or new step needs no list here."""
    steps = dict.fromkeys(e.name for e in timeline.events() if e.name.startswith(STEP_PREFIX))
    return {name: STEP_COLOURS[i % len(STEP_COLOURS)] for i, name in enumerate(steps)}


def _colour(e: Event, steps: dict[str, str]) -> str:
    if e.failed or e.name == OUTAGE:
        return ALERT_COLOUR
    if e.name in steps:
        return steps[e.name]
    return SOURCE_COLOURS.get(e.source, BOOT_COLOUR if e.source.startswith(BOOT_SOURCE_PREFIX) else OTHER_COLOUR)


def _ink(colour: str) -> str:
    """Black or white text, whichever reads better on `colour` (#rrggbb)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


# ---- drawing -----------------------------------------------------------------------------


def _tooltip(e: Event) -> str:
    duration = f" · {e.duration:.3f} s" if e.is_span else ""
    detail = f" · {e.detail}" if e.detail else ""
    return f"{e.name} · t+{e.t:.3f} s{duration}{detail}"


def _marker(p: Placed, bar_y: float, colour: str) -> str:
    """A bar for a span, a diamond for a point."""
    if p.event.is_span:
        return _tag("rect", x=p.x0, y=bar_y, width=p.x1 - p.x0, height=BAR_H, fill=colour, rx=2)
    x, cy = p.x0, bar_y + BAR_H / 2
    diamond = f"M{x:.1f},{cy - 7:.1f} L{x + 6:.1f},{cy:.1f} L{x:.1f},{cy + 7:.1f} L{x - 6:.1f},{cy:.1f} Z"
    return _tag("path", d=diamond, fill=colour, stroke="#ffffff", stroke_width=1)


def _event(p: Placed, bar_y: float, lane_fill: str, colour: str) -> str:
    """The marker, its label (inside the bar, or below with a leader line) and a tooltip."""
    parts = [_tag("title", _tooltip(p.event)), _marker(p, bar_y, colour)]
    style: dict[str, object]
    if p.row < 0:
        label_y, style = bar_y + BAR_H - 4, {"fill": _ink(colour)}
    else:
        label_y = bar_y + BAR_H + (p.row + 1) * ROW_H - 3
        style = {"stroke": lane_fill, "stroke_width": 3, "paint_order": "stroke"}
        leader = {"x1": p.label_x, "y1": bar_y + BAR_H, "x2": p.label_x, "y2": label_y - FONT + 2}
        parts.append(_tag("line", **leader, stroke=colour, stroke_width=1))
    if p.event.failed or p.event.name == OUTAGE:
        style["font_weight"] = "bold"
    parts.append(_tag("text", p.text, x=p.label_x, y=label_y, text_anchor=p.anchor, **style))
    return _group(parts, class_="event", data_name=p.event.name, data_source=p.event.source)


def _lane_title(source: str) -> str:
    if source.startswith(BOOT_SOURCE_PREFIX):
        return "boot " + source.removeprefix(BOOT_SOURCE_PREFIX)
    return _LANE_TITLES.get(source, source)


def _lane(lane: Lane, index: int, steps: dict[str, str]) -> tuple[str, list[str]]:
    """The lane's background (drawn under the grid), and its title and events (drawn over it)."""
    fill = "#f4f4f4" if index % 2 == 0 else "#ffffff"
    background = _tag("rect", x=0, y=lane.y, width=WIDTH, height=lane.height, fill=fill)
    title = _tag("text", _lane_title(lane.source), x=12, y=lane.bar_y + BAR_H - 3, class_="lane")
    events = [_event(p, lane.bar_y, fill, _colour(p.event, steps)) for p in lane.placed]
    return background, [title, *events]


def _axis(scale: Scale, bottom: float, t0_wall: str) -> list[str]:
    """Grid lines and tick labels in seconds since t0, and the axis title."""
    parts = []
    for tick in scale.ticks():
        x = scale.x(tick)
        parts.append(_tag("line", x1=x, y1=TOP, x2=x, y2=bottom + 5, class_="grid"))
        parts.append(_tag("text", f"{tick:g}", x=x, y=bottom + 19, text_anchor="middle"))
    title = f"seconds since t0 = {t0_wall}"
    parts.append(_tag("text", title, x=LEFT + PLOT_W / 2, y=bottom + 37, text_anchor="middle"))
    return parts


def _guides(timeline: Timeline, scenario: Scenario, scale: Scale, bottom: float) -> list[str]:
    """Dashed lines across every lane: when the fault hit and when the route moved."""
    fault = timeline.first(FAULT_INJECTED)
    if fault is None:
        return []
    marks = [(fault.t, "fault", SOURCE_COLOURS[SOURCE_FAULT])]
    total = fault_to_route(timeline, scenario.sla_seconds).seconds
    if total is not None:
        marks.append((fault.t + total, "route switched", SOURCE_COLOURS[SOURCE_ROUTER]))
    parts = []
    for t, text, colour in marks:
        x = scale.x(t)
        line = {"stroke": colour, "stroke_width": 1.5, "stroke_dasharray": "5,4"}
        parts.append(_tag("line", x1=x, y1=TOP - 6, x2=x, y2=bottom, **line))
        parts.append(_tag("text", text, x=x, y=TOP - 10, text_anchor="middle", fill=colour, font_weight="bold"))
    return parts


def _document(timeline: Timeline, scenario: Scenario, height: float, layers: list[str]) -> str:
    """The `<svg>` element: title, subtitle with the headline duration, then `layers`."""
    total = fault_to_route(timeline, scenario.sla_seconds)
    subtitle = (
        f"{scenario.backend} · {scenario.zones} zone(s) · fault {scenario.fault} · "
        f"fault → route switched {format_seconds(total.seconds)} ({total.note})"
    )
    size = {"width": WIDTH, "height": f"{height:.0f}"}
    svg = {"xmlns": "http://www.w3.org/2000/svg", **size, "viewBox": f"0 0 {WIDTH} {height:.0f}"}
    font = {"font_family": "DejaVu Sans, Arial, sans-serif", "font_size": FONT, "fill": "#222222"}
    return "\n".join(
        [
            f"<svg{_attrs(svg | font)}>",
            "<style>.lane{font-weight:bold}.grid{stroke:#d0d0d0;stroke-width:1}</style>",
            _tag("rect", **size, fill="#ffffff"),
            _tag("text", scenario.name, x=12, y=20, font_size=15, font_weight="bold"),
            _tag("text", subtitle, x=12, y=38),
            *layers,
            "</svg>",
            "",
        ]
    )


def render_svg(timeline: Timeline, scenario: Scenario) -> str:
    """A lane per source; spans as bars, points as diamonds, labels stacked so none overlap."""
    scale = Scale.fit(timeline.events())
    lanes = layout(timeline, scale)
    bottom = lanes[-1].y + lanes[-1].height if lanes else float(TOP)
    steps = step_colours(timeline)
    drawn = [_lane(lane, index, steps) for index, lane in enumerate(lanes)]
    layers = [
        *(background for background, _ in drawn),
        *_axis(scale, bottom, timeline.wall_of(0.0)),
        *(part for _, parts in drawn for part in parts),
        *_guides(timeline, scenario, scale, bottom),
        _tag("line", x1=LEFT, y1=bottom, x2=WIDTH - RIGHT, y2=bottom, stroke="#444"),
    ]
    return _document(timeline, scenario, bottom + AXIS_H, layers)
