"""What AWS does when a launch lifecycle hook is answered ABANDON or not answered in time; moto does neither.

- ABANDON (recorded by :mod:`natlab.cloud.moto_fixes`) terminates the instance;
- an instance left in ``Pending:Wait`` past the hook's heartbeat timeout gets the DefaultResult.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from natlab.cloud.asg_events import ABANDONED, LIFECYCLE_TIMEOUT

logger = logging.getLogger(__name__)


class _Backend(Protocol):
    def client(self, service: str) -> Any: ...


class _Tracked(Protocol):
    """What the ASG controller knows about one instance, as far as the hooks read it."""

    first_seen: float
    terminate_requested: bool


_T = TypeVar("_T", bound=_Tracked)


def heartbeat_timeout(hook: dict[str, Any], override: float | None) -> float:
    """How long ``hook`` waits for an answer: the lab's ``override``, else its HeartbeatTimeout (AWS: 3600 s)."""
    return override if override is not None else float(hook.get("HeartbeatTimeout", 3600))


def default_result(hook: dict[str, Any]) -> str:
    """What an unanswered ``hook`` applies (AWS's default: ABANDON)."""
    return str(hook.get("DefaultResult", "ABANDON"))


class LaunchHooks:
    """Launch hooks' heartbeat timeouts and ABANDONs, driven by the ASG controller's polls."""

    def __init__(
        self,
        backend: _Backend,
        emit: Callable[[str, str], None],
        call: Callable[..., None],
        lifecycle_actions: Callable[[], Sequence[Any]],
        abandon_to_terminate: float,
        lifecycle_timeout: float | None,
    ) -> None:
        """``call(service, operation, **params)``: the controller's API call (an API error is logged, not raised).
        ``lifecycle_actions``: source of CompleteLifecycleAction calls. ``lifecycle_timeout``: None = the
        hook's HeartbeatTimeout."""
        self.backend = backend
        self._emit = emit
        self._call = call
        self._lifecycle_actions = lifecycle_actions
        self.abandon_to_terminate = abandon_to_terminate
        self.lifecycle_timeout = lifecycle_timeout
        self._handled_actions: set[tuple[str, str, float]] = set()

    def check_timeout(self, group: dict[str, Any], instance_id: str, tracked: _Tracked, now: float) -> None:
        name = group["AutoScalingGroupName"]
        hooks = self.backend.client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
        for hook in hooks:
            if hook.get("LifecycleTransition") != "autoscaling:EC2_INSTANCE_LAUNCHING":
                continue
            if now - tracked.first_seen >= heartbeat_timeout(hook, self.lifecycle_timeout):
                result = default_result(hook)
                logger.info("%s: lifecycle hook timed out, applying %s", instance_id, result)
                self._emit(LIFECYCLE_TIMEOUT, instance_id)
                self._call(
                    "autoscaling",
                    "complete_lifecycle_action",
                    AutoScalingGroupName=name,
                    LifecycleHookName=hook["LifecycleHookName"],
                    LifecycleActionResult=result,
                    InstanceId=instance_id,
                )
            return

    def check_abandoned(self, instances: Mapping[str, _T], terminate: Callable[[str, _T], None], now: float) -> None:
        """Terminates (``terminate(instance_id, tracked)``) each of ``instances`` whose launch was ABANDONed."""
        for action in self._lifecycle_actions():
            key = (action.instance_id, action.result, action.at)
            if action.result != "ABANDON" or not action.accepted or key in self._handled_actions:
                continue
            tracked = instances.get(action.instance_id)
            if tracked is None or tracked.terminate_requested:
                continue
            if time.time() - action.at >= self.abandon_to_terminate:
                self._handled_actions.add(key)
                self._emit(ABANDONED, action.instance_id)
                terminate(action.instance_id, tracked)
