"""What AWS does to an Auto Scaling group of NAT instances that moto does not: health and hooks.

moto launches a replacement when an ASG instance is terminated, but nothing ever decides to
terminate one: stopped instances, failed status checks, status-check alarms with the EC2
terminate action, and ABANDONed launches are all ignored. :class:`AsgHealthController` is a
background thread that watches the groups through the public API (boto3) and does those things
with AWS-like timing, reporting each step to ``on_event(kind, instance_id, t)``.

Use it with moto only (:class:`natlab.cloud.backend.MotoBackend`); real AWS does all of this itself.

What is modelled (AWS figures are the defaults of :class:`natlab.cloud.aws_delays.AwsDelays`):

- a stopped/stopping instance: the ASG EC2 health check marks it Unhealthy, then replaces it;
- an instance marked Unhealthy through SetInstanceHealth (a peer NAT's takeover): replaced the same way,
  ``unhealthy_to_terminate`` after the controller sees the mark, grace period ignored;
- a replacement follows the group's instance maintenance policy: with a max healthy percentage of
  200 % or more the group launches the new instance first and terminates the unhealthy one only
  once the new one is InService (as AWS does within the max healthy percentage; emulated by
  raising the group's MaxSize/DesiredCapacity by one for the while); otherwise it terminates first
  and moto launches the replacement;
- an instance refresh (:meth:`AsgHealthController.start_instance_refresh`; moto has no
  StartInstanceRefresh): each instance is replaced the same way, new one first, when the refresh's
  min healthy percentage is 100 %;
- an impaired instance (fault injected by :meth:`AsgHealthController.impair`): the EC2 status
  check fails at its next run; an alarm on ``AWS/EC2 StatusCheckFailed`` for that instance whose
  actions include ``arn:aws:automate:<region>:ec2:terminate`` goes to ALARM after its own
  ``Period x EvaluationPeriods`` and terminates the instance. Without such an alarm the ASG's EC2
  health check still replaces the instance (it treats impaired status checks as unhealthy), later;
- launch lifecycle hooks (:mod:`natlab.cloud.launch_hooks`): ABANDON terminates the instance, a
  heartbeat timeout applies the DefaultResult;
- a failed launch (a lost zone, :mod:`natlab.cloud.launch_retry`): the group is launched again until
  a launch succeeds;
- warm pools (:mod:`natlab.cloud.warm_pool`): each group's pool is kept filled per DescribeWarmPool,
  a prepared instance is stopped ``warm_stop`` after its hook's CONTINUE, one that ABANDONed is
  terminated. Taking a prepared instance on a replacement is moto's part (the ``warm_pool`` fix).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, Self

import botocore.exceptions

from natlab.cloud.asg_events import ALARM, GONE, LAUNCHED, TERMINATE, UNHEALTHY, EventHook
from natlab.cloud.aws_delays import AwsDelays
from natlab.cloud.launch_first import LaunchFirst
from natlab.cloud.launch_hooks import LaunchHooks
from natlab.cloud.launch_retry import LaunchRetry
from natlab.cloud.warm_pool import WarmPoolKeeper
from natlab.resource import Resource
from natlab.waiting import wait_until

logger = logging.getLogger(__name__)

STATUS_CHECK_METRICS = ("StatusCheckFailed", "StatusCheckFailed_Instance")
NOT_RUNNING = ("stopping", "stopped")


class _Backend(Protocol):
    region: str

    def client(self, service: str) -> Any: ...


@dataclasses.dataclass
class _Tracked:
    """What the controller knows about one instance of one group."""

    group: str
    first_seen: float
    not_running_since: float | None = None
    unhealthy_at: float | None = None
    terminate_requested: bool = False


class AsgHealthController(Resource):
    """Background thread acting for the ASG health checks, status-check alarms and hooks."""

    def __init__(
        self,
        backend: _Backend,
        delays: AwsDelays | None = None,
        groups: Iterable[str] | None = None,
        on_event: EventHook | None = None,
        lifecycle_actions: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        """``groups``: names to watch (None: all). ``lifecycle_actions``: source of
        CompleteLifecycleAction calls (default: moto_fixes.LIFECYCLE.actions)."""
        self.backend = backend
        self.delays = delays or AwsDelays()
        self.groups = set(groups) if groups is not None else None
        self.on_event = on_event
        if lifecycle_actions is None:
            from natlab.cloud import moto_fixes

            lifecycle_actions = moto_fixes.LIFECYCLE.actions
        self._lock = threading.Lock()
        self._impaired: dict[str, float] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._current: dict[str, list[str]] = {}
        self._launch_first = LaunchFirst(backend, emit=self._emit)
        self._launch_hooks = LaunchHooks(
            backend,
            emit=self._emit,
            call=self._call,
            lifecycle_actions=lifecycle_actions,
            abandon_to_terminate=self.delays.abandon_to_terminate,
            lifecycle_timeout=self.delays.lifecycle_timeout,
        )
        self._launch_retry = LaunchRetry(
            backend, self._launch_first, call=self._call, retry_after=self.delays.launch_retry
        )
        self._warm_pools = WarmPoolKeeper(
            backend,
            emit=self._emit,
            abandon_to_terminate=self.delays.abandon_to_terminate,
            stop_after_continue=self.delays.warm_stop,
            lifecycle_timeout=self.delays.lifecycle_timeout,
        )
        self.events: list[tuple[str, str, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._polls = 0
        self._thread: threading.Thread | None = None

    # --- public API --------------------------------------------------------------------------

    def impair(self, instance_id: str) -> None:
        """Fault injection: from now on ``instance_id`` fails its EC2 status checks."""
        with self._lock:
            self._impaired.setdefault(instance_id, time.monotonic())
        logger.info("impaired %s: its status checks fail from now on", instance_id)

    def start_instance_refresh(self, group_name: str) -> None:
        """StartInstanceRefresh as the module configures it: every instance replaced, new one first."""
        self._launch_first.refresh(group_name)

    def refreshing(self, group_name: str) -> bool:
        """Whether a launch-first replacement in ``group_name`` is still running."""
        return self._launch_first.busy(group_name)

    def current_instances(self) -> dict[str, list[str]]:
        """Group name -> ids of its live instances, as of the last poll."""
        with self._lock:
            return {group: list(ids) for group, ids in self._current.items()}

    def wait_for_poll(self, timeout: float = 5.0) -> None:
        """Block until one full poll has run after this call."""
        target = self._polls + 2  # the one running now may have started before the call
        wait_until(
            lambda: self._polls >= target,
            what="ASG controller poll",
            timeout=timeout,
            interval=self.delays.poll_interval / 4,
        )

    def wait_for_replacement(self, group: str, old_instance_id: str, timeout: float) -> str:
        """The id of the instance that replaced ``old_instance_id`` in ``group``."""

        def replacement() -> str:
            ids = self.current_instances().get(group, [])
            fresh = [i for i in ids if i != old_instance_id]
            if not fresh or old_instance_id in ids:
                raise LookupError(f"{group} holds {ids}")
            return fresh[0]

        return wait_until(
            replacement,
            what=f"replacement of {old_instance_id} in {group}",
            timeout=timeout,
            interval=self.delays.poll_interval / 2,
        )

    # --- lifecycle of the thread -------------------------------------------------------------

    def start(self) -> Self:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="asg-controller", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                logger.warning("ASG controller thread did not stop within 10 s")
            self._thread = None

    def _run(self) -> None:
        # The controller's own clock (a periodic loop, not a wait): one poll every poll_interval.
        logger.info("ASG controller running with %s", self.delays)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                self.errors += 1
                logger.exception("ASG controller poll failed")
            self._polls += 1  # only this thread writes it
            self._stop.wait(self.delays.poll_interval)

    # --- one poll ----------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Look at every watched group once and act on what is due."""
        now = time.monotonic()
        groups = self._describe_groups()
        states = self._instance_states(groups)
        self._note_membership(groups, now)
        for group in groups:
            for old in self._launch_first.finish(group):
                if old in self._tracked:
                    self._tracked[old].terminate_requested = True
            grace = self._grace(group)
            for member in group["Instances"]:
                instance_id = member["InstanceId"]
                tracked = self._tracked[instance_id]
                if tracked.terminate_requested:
                    continue
                if member["LifecycleState"] == "Pending:Wait":
                    self._launch_hooks.check_timeout(group, instance_id, tracked, now)
                    continue
                if member["LifecycleState"] == "Pending:Proceed":
                    continue  # ABANDONed (moto_fixes marks it Unhealthy too): check_abandoned terminates it
                if member.get("HealthStatus") == "Unhealthy":
                    # Marked by someone else (a peer NAT's takeover, with ShouldRespectGracePeriod=false).
                    self._mark_unhealthy_then_terminate(instance_id, tracked, now, marked=True)
                    continue
                if now - tracked.first_seen < grace:
                    continue
                self._check_stopped(instance_id, states.get(instance_id), tracked, now)
                self._check_impaired(instance_id, tracked, now)
            self._warm_pools.poll(group)
            self._launch_retry.poll(group, now)
        self._launch_hooks.check_abandoned(self._tracked, self._terminate_in_group, now)

    def _describe_groups(self) -> list[dict[str, Any]]:
        paginator = self.backend.client("autoscaling").get_paginator("describe_auto_scaling_groups")
        groups = [g for page in paginator.paginate() for g in page["AutoScalingGroups"]]
        return [g for g in groups if self.groups is None or g["AutoScalingGroupName"] in self.groups]

    def _instance_states(self, groups: list[dict[str, Any]]) -> dict[str, str]:
        ids = [m["InstanceId"] for g in groups for m in g["Instances"]]
        if not ids:
            return {}
        reservations = self.backend.client("ec2").describe_instances(InstanceIds=ids)
        return {i["InstanceId"]: i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]}

    def _note_membership(self, groups: list[dict[str, Any]], now: float) -> None:
        current = {g["AutoScalingGroupName"]: [m["InstanceId"] for m in g["Instances"]] for g in groups}
        seen = {i for ids in current.values() for i in ids}
        for group, ids in current.items():
            for instance_id in ids:
                if instance_id not in self._tracked:
                    self._tracked[instance_id] = _Tracked(group, now)
                    self._emit(LAUNCHED, instance_id)
        for instance_id in [i for i in self._tracked if i not in seen]:
            del self._tracked[instance_id]
            with self._lock:
                self._impaired.pop(instance_id, None)
            self._emit(GONE, instance_id)
        with self._lock:
            self._current = current

    def _grace(self, group: dict[str, Any]) -> float:
        if self.delays.grace_period is not None:
            return self.delays.grace_period
        return float(group.get("HealthCheckGracePeriod") or 0)

    def _check_stopped(self, instance_id: str, state: str | None, tracked: _Tracked, now: float) -> None:
        if state not in NOT_RUNNING:
            tracked.not_running_since = None
            return
        if tracked.not_running_since is None:
            tracked.not_running_since = now
            logger.info("%s is %s", instance_id, state)
        if now - tracked.not_running_since >= self.delays.stopped_detection:
            self._mark_unhealthy_then_terminate(instance_id, tracked, now)

    def _check_impaired(self, instance_id: str, tracked: _Tracked, now: float) -> None:
        with self._lock:
            impaired_at = self._impaired.get(instance_id)
        if impaired_at is None:
            return
        failing_for = now - impaired_at - self.delays.status_check_interval
        if failing_for < 0:
            return  # the first failed status check has not run yet
        for alarm in self._terminate_alarms(instance_id):
            evaluation = self.delays.alarm_evaluation
            if evaluation is None:
                evaluation = float(alarm["Period"] * alarm["EvaluationPeriods"])
            if failing_for >= evaluation:
                self._fire_alarm(alarm, instance_id, tracked)
                return
        if failing_for >= self.delays.impaired_detection:
            self._mark_unhealthy_then_terminate(instance_id, tracked, now)

    def _terminate_alarms(self, instance_id: str) -> list[dict[str, Any]]:
        """Status-check alarms on this instance whose actions terminate it."""
        terminate = f"arn:aws:automate:{self.backend.region}:ec2:terminate"
        cloudwatch = self.backend.client("cloudwatch")
        alarms = [a for page in cloudwatch.get_paginator("describe_alarms").paginate() for a in page["MetricAlarms"]]
        return [
            a
            for a in alarms
            if a.get("Namespace") == "AWS/EC2"
            and a.get("MetricName") in STATUS_CHECK_METRICS
            and {"Name": "InstanceId", "Value": instance_id} in a.get("Dimensions", [])
            and terminate in a.get("AlarmActions", [])
            and a.get("ActionsEnabled", True)
        ]

    def _fire_alarm(self, alarm: dict[str, Any], instance_id: str, tracked: _Tracked) -> None:
        self.backend.client("cloudwatch").set_alarm_state(
            AlarmName=alarm["AlarmName"],
            StateValue="ALARM",
            StateReason=f"natlab: {instance_id} failed its status checks",
        )
        self._emit(ALARM, instance_id)
        tracked.terminate_requested = True
        self._emit(TERMINATE, instance_id)
        self._call("ec2", "terminate_instances", InstanceIds=[instance_id])

    def _mark_unhealthy_then_terminate(
        self, instance_id: str, tracked: _Tracked, now: float, *, marked: bool = False
    ) -> None:
        if tracked.unhealthy_at is None:
            tracked.unhealthy_at = now
            if marked:
                self._emit(UNHEALTHY, instance_id)
                return
            self._call(
                "autoscaling",
                "set_instance_health",
                InstanceId=instance_id,
                HealthStatus="Unhealthy",
            )
            self._emit(UNHEALTHY, instance_id)
        if now - tracked.unhealthy_at >= self.delays.unhealthy_to_terminate:
            self._replace(instance_id, tracked)

    def _replace(self, instance_id: str, tracked: _Tracked) -> None:
        """The health check's replacement: launch first where the maintenance policy says so."""
        tracked.terminate_requested = True
        if not self._launch_first.replace(tracked.group, instance_id, "health"):
            self._terminate_in_group(instance_id, tracked)

    def _terminate_in_group(self, instance_id: str, tracked: _Tracked) -> None:
        tracked.terminate_requested = True
        self._emit(TERMINATE, instance_id)
        self._call(
            "autoscaling",
            "terminate_instance_in_auto_scaling_group",
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=False,
        )

    # --- helpers -----------------------------------------------------------------------------

    def _call(self, service: str, operation: str, **params: Any) -> None:
        try:
            getattr(self.backend.client(service), operation)(**params)
        except botocore.exceptions.ClientError as error:
            logger.warning("%s.%s%s failed: %s", service, operation, params, error)

    def _emit(self, kind: str, instance_id: str) -> None:
        t = time.time()
        logger.info("asg event %s %s", kind, instance_id)
        with self._lock:
            self.events.append((kind, instance_id, t))
        if self.on_event is not None:
            try:
                self.on_event(kind, instance_id, t)
            except Exception:
                logger.exception("on_event hook failed for %s %s", kind, instance_id)
