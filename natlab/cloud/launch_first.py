"""Replacing an Auto Scaling instance by launching the new one first, as the module configures it.

AWS launches before it terminates when the group's instance maintenance policy (health
replacements) or the instance refresh preferences (planned replacements) allow 200 % healthy
capacity and require 100 %. moto has neither behaviour, so this emulation raises the group's
MaxSize and DesiredCapacity by one (moto launches the new instance), waits until a new instance is
InService, then terminates the old one with the capacity decrement and restores MaxSize.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import botocore.exceptions

logger = logging.getLogger(__name__)

REPLACE = "replace"  # event kind prefix: replace-health, replace-refresh
TERMINATE = "terminate"


class _Backend(Protocol):
    def client(self, service: str) -> Any: ...


@dataclasses.dataclass(frozen=True)
class _Replacement:
    group: str
    old_instance_id: str
    max_size: int


class LaunchFirst:
    """Launch-first replacements in flight, driven by the ASG controller's polls."""

    def __init__(self, backend: _Backend, emit: Callable[[str, str], None]) -> None:
        self.backend = backend
        self._emit = emit
        self._lock = threading.Lock()
        self._replacements: dict[str, _Replacement] = {}  # by old instance id

    def replace(self, group_name: str, instance_id: str, reason: str) -> bool:
        """Starts replacing ``instance_id`` if the group launches first; False if it does not."""
        group = self._describe(group_name)
        policy = group.get("InstanceMaintenancePolicy") or {}
        if reason == "health" and not _launches_first(policy):
            return False
        self._start(group, instance_id, reason)
        return True

    def refresh(self, group_name: str) -> None:
        """StartInstanceRefresh with min 100 % / max 200 % healthy: every instance, new one first."""
        group = self._describe(group_name)
        for member in group["Instances"]:
            self._start(group, member["InstanceId"], "refresh")

    def busy(self, group_name: str) -> bool:
        with self._lock:
            return any(r.group == group_name for r in self._replacements.values())

    def finish(self, group: dict[str, Any]) -> list[str]:
        """Terminates each replaced instance of ``group`` that has an InService successor."""
        name = group["AutoScalingGroupName"]
        with self._lock:
            mine = [r for r in self._replacements.values() if r.group == name]
        replaced = {r.old_instance_id for r in mine}
        successors = [
            m["InstanceId"]
            for m in group["Instances"]
            if m["LifecycleState"] == "InService" and m["InstanceId"] not in replaced
        ]
        if not mine or not successors:
            return []
        for replacement in mine:
            self._retire(replacement)
        return sorted(replaced)

    def _start(self, group: dict[str, Any], instance_id: str, reason: str) -> None:
        with self._lock:
            if instance_id in self._replacements:
                return
            first = not any(r.group == group["AutoScalingGroupName"] for r in self._replacements.values())
            self._replacements[instance_id] = _Replacement(group["AutoScalingGroupName"], instance_id, group["MaxSize"])
        self._emit(f"{REPLACE}-{reason}", instance_id)
        if first:
            self._call(
                "update_auto_scaling_group",
                AutoScalingGroupName=group["AutoScalingGroupName"],
                MaxSize=group["MaxSize"] + 1,
                DesiredCapacity=group["DesiredCapacity"] + 1,
            )

    def _retire(self, replacement: _Replacement) -> None:
        self._emit(TERMINATE, replacement.old_instance_id)
        self._call(
            "terminate_instance_in_auto_scaling_group",
            InstanceId=replacement.old_instance_id,
            ShouldDecrementDesiredCapacity=True,
        )
        self._call("update_auto_scaling_group", AutoScalingGroupName=replacement.group, MaxSize=replacement.max_size)
        with self._lock:
            del self._replacements[replacement.old_instance_id]

    def _describe(self, group_name: str) -> dict[str, Any]:
        answer = self.backend.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
        return answer["AutoScalingGroups"][0]

    def _call(self, operation: str, **params: Any) -> None:
        try:
            getattr(self.backend.client("autoscaling"), operation)(**params)
        except botocore.exceptions.ClientError as error:
            logger.warning("autoscaling.%s%s failed: %s", operation, params, error)


def _launches_first(policy: dict[str, Any]) -> bool:
    return policy.get("MinHealthyPercentage", 0) >= 100 and policy.get("MaxHealthyPercentage", 0) >= 200
