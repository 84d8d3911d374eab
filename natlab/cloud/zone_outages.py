"""A whole availability zone lost: which zones are down, and the moto hook that refuses launches into them.

AWS: in a zone outage the zone's instances fail, and an Auto Scaling group's launches into that
zone fail too (the scaling activity fails, e.g. ``InsufficientInstanceCapacity``); the group keeps
trying to reach its desired capacity and succeeds once the zone takes launches again.

Modelled here (``ZONES``, process-wide like moto's state): while a zone is ``down``, a launch into
a group whose zones are all down launches nothing and is recorded in ``ZONES.refused`` (moto would
launch at once, inside the TerminateInstances of the dead instance). The retry is the ASG
controller's (``launch_retry.py``, after ``AwsDelays.launch_retry``: a group whose launch was refused,
``ZONES.owes``, and that is below its desired capacity is launched again).
What is not modelled: the lost zone's own subnets keep forwarding in the emulated VPC (its private
workload is still there to check that the zone is served again afterwards).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from moto.autoscaling import models as asg_models

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefusedLaunch:
    """A launch Auto Scaling could not make because its zone was down."""

    group: str
    zones: tuple[str, ...]
    count: int
    at: float
    """Wall-clock time (``time.time()``)."""


class ZoneOutages:
    """The zones that are down now, and every launch refused because of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._owed: set[str] = set()  # groups whose last launch was refused
        self.refused: list[RefusedLaunch] = []

    @contextlib.contextmanager
    def down(self, zone: str) -> Iterator[None]:
        """The zone takes no launch during the block (it is back afterwards, also on an error)."""
        if not zone:
            raise ValueError("zone must be an availability zone name such as us-east-1b, got an empty string")
        with self._lock:
            if zone in self._down:
                raise RuntimeError(f"zone {zone} is already down")
            self._down.add(zone)
        logger.info("zone %s is down: launches into it fail", zone)
        try:
            yield
        finally:
            with self._lock:
                self._down.discard(zone)
            logger.info("zone %s is back", zone)

    def refuses(self, zones: list[str]) -> bool:
        """Whether a launch that may go to any of ``zones`` fails now (all of them are down)."""
        with self._lock:
            return bool(zones) and set(zones) <= self._down

    def refused_since(self, group: str, since: float) -> list[RefusedLaunch]:
        with self._lock:
            return [r for r in self.refused if r.group == group and r.at >= since]

    def owes(self, group: str) -> bool:
        """Whether the group's last launch was refused (and none went through since)."""
        with self._lock:
            return group in self._owed

    def note_refused(self, group: str, zones: list[str], count: int) -> None:
        with self._lock:
            self.refused.append(RefusedLaunch(group, tuple(zones), count, time.time()))
            self._owed.add(group)

    def note_launched(self, group: str) -> None:
        with self._lock:
            self._owed.discard(group)


ZONES = ZoneOutages()


def fix_zone_outages(patch: Callable[[Any, str, Any], None]) -> None:
    """Launches into a group whose zones are all down (``ZONES``) fail: nothing is launched.

    Not a moto bug: moto has no notion of a zone outage. Registered with the fixes so that it wraps
    the others' launch (warm pool, lifecycle hooks) and comes off and back with them.
    """
    group_cls = asg_models.FakeAutoScalingGroup
    original_replace = group_cls.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
        zones = list(self.availability_zones or [])
        if ZONES.refuses(zones):
            ZONES.note_refused(self.name, zones, count_needed)
            logger.info("launch of %d into %s refused: %s down", count_needed, self.name, ", ".join(zones))
            return
        original_replace(self, count_needed, propagated_tags)
        ZONES.note_launched(self.name)

    patch(group_cls, "replace_autoscaling_group_instances", replace_autoscaling_group_instances)
