"""Launching again into a group whose launch failed (a lost zone), as AWS retries failed launches on its own.

A group whose launch was refused (:mod:`natlab.cloud.zone_outages`) and that is below its desired
capacity for ``AwsDelays.launch_retry`` is launched again (SetDesiredCapacity to the same value),
until a launch succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from natlab.cloud.launch_first import LaunchFirst
from natlab.cloud.zone_outages import ZONES

logger = logging.getLogger(__name__)


class _Backend(Protocol):
    def client(self, service: str) -> Any: ...


class LaunchRetry:
    """Groups short of their desired capacity after a refused launch, driven by the ASG controller's polls."""

    def __init__(
        self, backend: _Backend, launch_first: LaunchFirst, call: Callable[..., None], retry_after: float
    ) -> None:
        """``call(service, operation, **params)``: the controller's API call (an API error is logged, not raised)."""
        self.backend = backend
        self._launch_first = launch_first
        self._call = call
        self.retry_after = retry_after
        self._short_since: dict[str, float] = {}  # group -> when it was first seen below its desired capacity

    def poll(self, group: dict[str, Any], now: float) -> None:
        """A group short of its desired capacity for ``retry_after`` s launches again (a failed launch)."""
        name = group["AutoScalingGroupName"]
        # Only launches this lab refused (a lost zone) are retried: moto's own bookkeeping of a group's
        # size is left alone (it can read short for a moment where AWS would not launch).
        if not ZONES.owes(name) or self._launch_first.busy(name) or not _short(group):
            self._short_since.pop(name, None)
            return
        since = self._short_since.setdefault(name, now)
        if now - since < self.retry_after:
            return
        self._short_since[name] = now
        # Read again: SetDesiredCapacity below the group's size would terminate instances.
        group = self.backend.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ][0]
        if _short(group):
            logger.info("%s is short of its %d instances: launching again", name, group["DesiredCapacity"])
            self._call(
                "autoscaling",
                "set_desired_capacity",
                AutoScalingGroupName=name,
                DesiredCapacity=group["DesiredCapacity"],
            )


def _short(group: dict[str, Any]) -> bool:
    """Whether the group has fewer live (InService or Pending) instances than its desired capacity."""
    states = [m["LifecycleState"] for m in group["Instances"]]
    return sum(1 for s in states if s == "InService" or s.startswith("Pending")) < group["DesiredCapacity"]
