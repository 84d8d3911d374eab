"""A whole zone lost in the lab: its NAT dies and the zone takes no launch until it is back.

The model (``natlab.cloud.zone_outages``): launches into the lost zone's group fail, the lab's ASG
controller keeps retrying them, and the first retry after the zone is back launches the NAT that
serves it again. ``watch_routes`` samples other zones' routes all the while, so a change that comes
and goes between two looks at the end is still seen.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from natlab.cloud.zone_outages import ZONES
from natlab.lab.failover import inject
from natlab.lab.lab import Lab

#: How often ``watch_routes`` reads the other zones' route tables.
ROUTE_WATCH_INTERVAL = 0.1


@dataclass
class ZoneLoss:
    """One lost zone: its NAT that died, and when the zone went (and came back), monotonic."""

    zone: str
    nat: str
    lost_at: float
    lost_wall: float
    back_at: float | None = None


@contextlib.contextmanager
def zone_lost(lab: Lab, zone: str) -> Iterator[ZoneLoss]:
    """During the block the zone is down: its NAT is terminated and no launch into it succeeds."""
    if lab.controller is None:
        raise RuntimeError("a lost zone is modelled on the embedded emulator only (moto and the lab's ASG controller)")
    if zone not in lab.zones:
        raise ValueError(f"zone must be one of the lab's zones {sorted(lab.zones)}, got {zone!r}")
    nat = lab.current_nat(zone)
    with ZONES.down(zone):
        loss = ZoneLoss(zone, nat, time.monotonic(), time.time())
        inject(lab, nat, "terminate")
        try:
            yield loss
        finally:
            loss.back_at = time.monotonic()


@dataclass
class RouteWatch:
    """The routes of ``zones`` as first read, and every different reading seen since."""

    before: dict[str, dict[str, str | None]]
    changes: list[str] = field(default_factory=list)
    reads: int = 0


@contextlib.contextmanager
def watch_routes(lab: Lab, zones: list[str]) -> Iterator[RouteWatch]:
    """Reads the zones' route tables every ``ROUTE_WATCH_INTERVAL`` s during the block."""
    watch = RouteWatch({zone: lab.route_targets(zone) for zone in zones})
    stop = threading.Event()

    def look() -> None:
        # A periodic sampler (not a wait): one reading every interval until the block ends.
        while not stop.wait(ROUTE_WATCH_INTERVAL):
            for zone, before in watch.before.items():
                now = lab.route_targets(zone)
                if now != before:
                    watch.changes.append(f"{zone}: {before} -> {now}")
            watch.reads += 1

    sampler = threading.Thread(target=look, name="route-watch", daemon=True)
    sampler.start()
    try:
        yield watch
    finally:
        stop.set()
        sampler.join(timeout=5.0)
