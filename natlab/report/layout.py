"""Where everything goes in the SVG timeline, before anything is drawn.

The time axis is fitted to the events (`Scale`); each source gets a lane, in a fixed order (fault,
auto scaling, the boots, router, probes); each event gets its bar or diamond and a label, inside
its bar when it fits, else in rows under the bar stacked so that no two labels overlap (`Lane`).
Sizes are in pixels; `svg.py` draws from this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .summary import shorten
from .timeline import (
    BOOT_FAILED,
    BOOT_NOTE,
    BOOT_SOURCE_PREFIX,
    SOURCE_ASG,
    SOURCE_FAULT,
    SOURCE_PROBE,
    SOURCE_ROUTER,
    STEP_PREFIX,
    Event,
    Timeline,
)

WIDTH, LEFT, RIGHT, TOP = 1100, 200, 40, 64
PLOT_W = WIDTH - LEFT - RIGHT
BAR_H, ROW_H, LANE_PAD, AXIS_H = 16, 15, 8, 44
FONT, CHAR_W = 12, 7.0  # DejaVu Sans at 12 px averages ~7 px per character

_LANE_RANK = {SOURCE_FAULT: 0, SOURCE_ASG: 1, SOURCE_ROUTER: 3, SOURCE_PROBE: 4}  # boot lanes are 2


def _nice_step(span: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 12:
            return step
    return 1200.0


@dataclass(frozen=True)
class Scale:
    """The time axis: from a little before the first event to a little after the last."""

    t_lo: float
    t_hi: float

    @classmethod
    def fit(cls, events: Sequence[Event]) -> Scale:
        lo = min([0.0, *(e.t for e in events)])
        hi = max([lo + 1.0, *(e.finish for e in events)])
        pad = (hi - lo) * 0.02
        return cls(lo - pad, hi + pad)

    def x(self, t: float) -> float:
        return LEFT + (t - self.t_lo) / (self.t_hi - self.t_lo) * PLOT_W

    def ticks(self) -> list[float]:
        """Round numbers across the axis, about a dozen of them."""
        step = _nice_step(self.t_hi - self.t_lo)
        tick = (int(self.t_lo / step) - (self.t_lo < 0)) * step
        ticks = []
        while tick <= self.t_hi:
            if tick >= self.t_lo:
                ticks.append(tick)
            tick = round(tick + step, 6)
        return ticks


@dataclass(frozen=True)
class Placed:
    """An event and where it goes: its bar or diamond (`x0`..`x1`) and its label."""

    event: Event
    x0: float
    x1: float
    text: str
    label_x: float
    anchor: str  # "start" or "end"
    row: int  # label row under the bar; -1 when the label fits inside the bar


@dataclass(frozen=True)
class Lane:
    """One source's band across the plot, as tall as its label rows need."""

    source: str
    y: float
    placed: list[Placed]
    rows: int

    @property
    def bar_y(self) -> float:
        return self.y + LANE_PAD

    @property
    def height(self) -> float:
        return LANE_PAD * 2 + BAR_H + max(1, self.rows) * ROW_H


def _lane_order(sources: list[str]) -> list[str]:
    """Fault, auto scaling, the boots (in order of appearance), router, probes, anything else."""

    def rank(source: str) -> tuple[int, int]:
        group = 2 if source.startswith(BOOT_SOURCE_PREFIX) else _LANE_RANK.get(source, 5)
        return group, sources.index(source)

    return sorted(sources, key=rank)


def _label(e: Event) -> str:
    if e.is_span:
        name = e.name.removeprefix(STEP_PREFIX)
        return f"{name} {e.duration:.2f} s" + (" ✗" if e.failed else "")
    if e.name in (BOOT_FAILED, BOOT_NOTE):  # what went wrong is the point of these
        return f"{e.name}: {shorten(e.detail, 40)}"
    if e.detail and len(e.detail) <= 28 and not e.source.startswith(BOOT_SOURCE_PREFIX):
        return f"{e.name}: {e.detail}"
    return e.name


def _place(events: Iterable[Event], scale: Scale) -> tuple[list[Placed], int]:
    """Each event's label: inside its bar when it fits, else in the first row under the bar
    where it does not touch the label before it. Returns the placements and the rows used."""
    rows: list[float] = []  # right edge of the last label in each row
    placed = []
    for e in events:
        x0 = scale.x(e.t)
        x1 = max(scale.x(e.finish), x0 + 2)
        text = _label(e)
        width = len(text) * CHAR_W
        if e.is_span and x1 - x0 >= width + 8:
            placed.append(Placed(e, x0, x1, text, x0 + 4, "start", -1))
            continue
        label_x, anchor = (x1, "end") if x0 + width > WIDTH - 4 else (x0, "start")
        left = label_x - width if anchor == "end" else label_x
        row = next((i for i, edge in enumerate(rows) if left > edge + 6), len(rows))
        if row == len(rows):
            rows.append(0.0)
        rows[row] = left + width
        placed.append(Placed(e, x0, x1, text, label_x, anchor, row))
    return placed, len(rows)


def layout(timeline: Timeline, scale: Scale) -> list[Lane]:
    """The lanes, top to bottom."""
    events = timeline.events()
    lanes: list[Lane] = []
    y: float = TOP
    for source in _lane_order(timeline.sources()):
        placed, rows = _place((e for e in events if e.source == source), scale)
        lanes.append(Lane(source, y, placed, rows))
        y += lanes[-1].height
    return lanes
