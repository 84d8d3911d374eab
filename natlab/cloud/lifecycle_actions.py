"""What CompleteLifecycleAction calls moto received: the ASG controller and the tests read them."""

from __future__ import annotations

import dataclasses
import logging
import threading

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LifecycleAction:
    """One CompleteLifecycleAction call as moto received it."""

    group_name: str
    hook_name: str
    instance_id: str
    result: str  # CONTINUE | ABANDON
    at: float  # time.time()
    accepted: bool  # False when AWS would have answered "No active Lifecycle Action found"


class LifecycleRegistry:
    """Thread-safe record of lifecycle actions; the ASG controller and the tests read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: list[LifecycleAction] = []

    def record(self, action: LifecycleAction) -> None:
        with self._lock:
            self._actions.append(action)
        logger.info(
            "lifecycle action %s for %s (%s/%s)%s",
            action.result,
            action.instance_id,
            action.group_name,
            action.hook_name,
            "" if action.accepted else " rejected: no pending action",
        )

    def actions(self, instance_id: str | None = None) -> list[LifecycleAction]:
        with self._lock:
            return [a for a in self._actions if instance_id in (None, a.instance_id)]

    def clear(self) -> None:
        with self._lock:
            self._actions.clear()


LIFECYCLE = LifecycleRegistry()
