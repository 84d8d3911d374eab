"""An Auto Scaling warm pool's behaviour, which moto 5.2.5 lacks (it stores the configuration only).

AWS (ASG user guide, "warm pools" and "Use lifecycle hooks with a warm pool"): the group keeps
``MinSize`` (or ``MaxGroupPreparedCapacity - desired``, whichever is more) instances beside it. Each
enters the pool through a launch: the launch hook holds it in ``Warmed:Pending:Wait`` while its user
data runs (IMDS ``autoscaling/target-lifecycle-state`` says ``Warmed:Stopped``); once the hook is
completed it is stopped (``Warmed:Stopped``). When the group needs an instance it takes one from the
pool: it starts it, the launch hook fires again (``Pending:Wait``, target state ``InService``), and
the pool is refilled by a new launch. An instance whose preparation is ABANDONed is terminated and
replaced. With the pool empty, the group launches as it would without one.

Here, in two parts:

- :data:`WARM` (:class:`WarmPools`), the pool's members and each one's target lifecycle state. The
  moto fix ``warm_pool`` (:mod:`natlab.cloud.moto_fixes`) reads it: DescribeWarmPool lists the
  members, a launch into the group takes a ``Warmed:Stopped`` member first, CompleteLifecycleAction
  answers for members, DeleteWarmPool terminates them. The fleet asks it which target state an
  instance's IMDS serves.
- :class:`WarmPoolKeeper`, driven by the ASG controller's polls: it fills each group's pool per
  DescribeWarmPool (RunInstances from the group's launch template), stops members whose hook
  completed with CONTINUE, terminates those that ABANDONed or outlived the hook's heartbeat with
  DefaultResult ABANDON, and those left by a deleted pool.

Timing: a launch into the pool and a start take what the emulator and the fleet take, plus the
controller's poll (``AwsDelays.poll_interval``); the stop follows the hook's CONTINUE after
``AwsDelays.warm_stop`` (an OS shutdown: "a few seconds", an estimate); the fleet takes
``LAUNCH_ONLY_SECONDS`` (3 s, an estimate from RunInstances' ~1.5-5 s) off ``--boot-delay`` for a
start, since the OS boots all the same. Not modelled: ``Warmed:Running`` and ``Warmed:Hibernated``
pools (the module offers neither), health checks of pool instances, and an instance refresh
replacing pool instances.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import botocore.exceptions

from natlab.cloud.launch_hooks import default_result, heartbeat_timeout

logger = logging.getLogger(__name__)

PENDING = "Warmed:Pending:Wait"  # launched into the pool, its boot script preparing it
PROCEED = "Warmed:Pending:Proceed"  # hook completed with CONTINUE: to be stopped
STOPPED = "Warmed:Stopped"  # prepared and stopped: ready to be taken
ABANDONED = "Warmed:Terminating"  # hook completed with ABANDON: to be terminated
IN_SERVICE = "InService"

# Event kinds the keeper passes to emit.
WARM_LAUNCHED = "warm-launched"
WARM_STOPPED = "warm-stopped"
WARM_ABANDONED = "warm-abandoned"
WARM_TIMEOUT = "warm-lifecycle-timeout"
WARM_ORPHANED = "warm-orphaned"  # launched while its pool was being deleted: terminated
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


@dataclasses.dataclass
class WarmInstance:
    instance_id: str
    group: str
    state: str
    target: str  # what IMDS says at autoscaling/target-lifecycle-state
    changed_at: float = dataclasses.field(default_factory=time.monotonic)


class WarmPools:
    """Every group's warm pool members (thread-safe): the controller, moto's fix and the fleet share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, WarmInstance] = {}
        self._targets: dict[str, str] = {}  # target states outlive membership (taken instances)
        self._stops: dict[str, int] = {}  # how often the keeper stopped each instance
        self._changes: dict[str, int] = {}  # group -> PutWarmPool/DeleteWarmPool calls seen

    def add(self, group: str, instance_id: str, pool_state: str = "Stopped") -> None:
        with self._lock:
            self._members[instance_id] = WarmInstance(instance_id, group, PENDING, f"Warmed:{pool_state}")
            self._targets[instance_id] = f"Warmed:{pool_state}"

    def members(self, group: str | None = None) -> list[WarmInstance]:
        with self._lock:
            return [dataclasses.replace(m) for m in self._members.values() if group in (None, m.group)]

    def get(self, instance_id: str) -> WarmInstance | None:
        with self._lock:
            member = self._members.get(instance_id)
            return dataclasses.replace(member) if member else None

    def set_state(self, instance_id: str, state: str) -> None:
        with self._lock:
            member = self._members.get(instance_id)
            if member is not None:
                member.state = state
                member.changed_at = time.monotonic()

    def note_configured(self, group: str) -> None:
        """PutWarmPool or DeleteWarmPool on ``group``: a cached DescribeWarmPool answer is stale."""
        with self._lock:
            self._changes[group] = self._changes.get(group, 0) + 1

    def configuration_changes(self, group: str) -> int:
        with self._lock:
            return self._changes.get(group, 0)

    def note_stopped(self, instance_id: str) -> None:
        with self._lock:
            self._stops[instance_id] = self._stops.get(instance_id, 0) + 1

    def stops(self, instance_id: str) -> int:
        """How often the instance was stopped for the pool (the fleet ends its sandbox on each)."""
        with self._lock:
            return self._stops.get(instance_id, 0)

    def take(self, group: str) -> str | None:
        """A prepared member leaves the pool for the group (its target state becomes InService)."""
        with self._lock:
            ready = sorted(
                (m for m in self._members.values() if m.group == group and m.state == STOPPED),
                key=lambda m: m.changed_at,
            )
            if not ready:
                return None
            instance_id = ready[0].instance_id
            del self._members[instance_id]
            self._targets[instance_id] = IN_SERVICE
            return instance_id

    def remove(self, instance_id: str) -> None:
        with self._lock:
            self._members.pop(instance_id, None)

    def remove_group(self, group: str) -> list[str]:
        """Forget a group's pool (DeleteWarmPool); returns its members' ids."""
        with self._lock:
            gone = [i for i, m in self._members.items() if m.group == group]
            for instance_id in gone:
                del self._members[instance_id]
            return gone

    def set_target_state(self, instance_id: str, state: str) -> None:
        """What IMDS will say at the instance's next boot (a scenario can make it lag)."""
        with self._lock:
            self._targets[instance_id] = state

    def target_state(self, instance_id: str) -> str | None:
        """What IMDS says at ``autoscaling/target-lifecycle-state``; None for instances never in a pool."""
        with self._lock:
            return self._targets.get(instance_id)

    def clear(self) -> None:
        with self._lock:
            self._members.clear()
            self._targets.clear()
            self._stops.clear()
            self._changes.clear()


WARM = WarmPools()


class _Backend(Protocol):
    def client(self, service: str) -> Any: ...


class WarmPoolKeeper:
    """Fills, stops and cleans each group's warm pool; called by the ASG controller once a poll per group."""

    def __init__(
        self,
        backend: _Backend,
        emit: Callable[[str, str], None],
        pools: WarmPools = WARM,
        abandon_to_terminate: float = 0.0,
        stop_after_continue: float = 0.0,
        config_refresh: float = 1.0,
        lifecycle_timeout: float | None = None,
    ) -> None:
        """``config_refresh``: how long a group's DescribeWarmPool answer is reused (each call costs
        the emulator a few ms of this process's CPU, and the pool's configuration rarely changes).
        ``lifecycle_timeout``: how long a member may stay in ``Warmed:Pending:Wait`` before the launch
        hook's DefaultResult applies (None: the hook's HeartbeatTimeout)."""
        self.backend = backend
        self._emit = emit
        self.pools = pools
        self.abandon_to_terminate = abandon_to_terminate
        self.stop_after_continue = stop_after_continue
        self.config_refresh = config_refresh
        self.lifecycle_timeout = lifecycle_timeout
        self._configs: dict[str, tuple[float, int, dict[str, Any] | None]] = {}
        self._hooks: dict[str, dict[str, Any] | None] = {}

    def poll(self, group: dict[str, Any]) -> None:
        name = group["AutoScalingGroupName"]
        config = self._configuration(name)
        if config is None:
            self._terminate_orphans(name)
            return
        now = time.monotonic()
        for member in self.pools.members(name):
            if member.state == PROCEED and now - member.changed_at >= self.stop_after_continue:
                self._stop(member)
            elif member.state == ABANDONED and now - member.changed_at >= self.abandon_to_terminate:
                self._terminate(member)
            elif member.state == PENDING:
                self._check_timeout(name, member, now)
        missing = self.wanted(group, config) - len(self.pools.members(name))
        if missing > 0:
            config = self._configuration(name, fresh=True)  # a launch is rare: not on a cached answer
        for _ in range(max(missing, 0) if config is not None else 0):
            self._launch(group, config)

    @staticmethod
    def wanted(group: dict[str, Any], config: dict[str, Any]) -> int:
        """Pool size: MinSize, or the prepared capacity left beside the group's desired one if more."""
        prepared = config.get("MaxGroupPreparedCapacity")
        if prepared is None or prepared < 0:
            prepared = group["MaxSize"]
        return max(int(config.get("MinSize") or 0), prepared - group["DesiredCapacity"])

    def _terminate_orphans(self, name: str) -> None:
        """Members of a pool that no longer exists (launched while it was being deleted) go with it."""
        for member in self.pools.members(name):
            self._terminate(member, WARM_ORPHANED)

    def _configuration(self, name: str, fresh: bool = False) -> dict[str, Any] | None:
        read_at, changes, config = self._configs.get(name, (float("-inf"), -1, None))
        unchanged = changes == self.pools.configuration_changes(name)
        if not fresh and unchanged and time.monotonic() - read_at < self.config_refresh:
            return config
        changes = self.pools.configuration_changes(name)
        try:
            answer = self.backend.client("autoscaling").describe_warm_pool(AutoScalingGroupName=name)
            config = answer.get("WarmPoolConfiguration") or None
        except botocore.exceptions.ClientError:
            config = None
        self._configs[name] = (time.monotonic(), changes, config)
        return config

    def _launch(self, group: dict[str, Any], config: dict[str, Any]) -> None:
        template = group["LaunchTemplate"]
        subnet = group["VPCZoneIdentifier"].split(",")[0]
        reservation = self.backend.client("ec2").run_instances(
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": template["Version"]},
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
        )
        instance_id = reservation["Instances"][0]["InstanceId"]
        self.pools.add(group["AutoScalingGroupName"], instance_id, config.get("PoolState") or "Stopped")
        self._emit(WARM_LAUNCHED, instance_id)
        if self._launch_hook(group["AutoScalingGroupName"]) is None:
            # Nothing holds it: Auto Scaling stops it whether or not its user data is done (why the
            # module requires the hook with a pool).
            self.pools.set_state(instance_id, PROCEED)

    def _launch_hook(self, name: str) -> dict[str, Any] | None:
        if name not in self._hooks:
            hooks = self.backend.client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=name)
            launching = [h for h in hooks["LifecycleHooks"] if h.get("LifecycleTransition") == LAUNCHING]
            self._hooks[name] = launching[0] if launching else None
        return self._hooks[name]

    def _check_timeout(self, name: str, member: WarmInstance, now: float) -> None:
        hook = self._launch_hook(name)
        if hook is None:
            return
        if now - member.changed_at >= heartbeat_timeout(hook, self.lifecycle_timeout):
            result = default_result(hook)
            logger.info("%s: warm pool launch hook timed out, applying %s", member.instance_id, result)
            self._emit(WARM_TIMEOUT, member.instance_id)
            self.pools.set_state(member.instance_id, PROCEED if result == "CONTINUE" else ABANDONED)

    def _stop(self, member: WarmInstance) -> None:
        self.backend.client("ec2").stop_instances(InstanceIds=[member.instance_id])
        self.pools.note_stopped(member.instance_id)
        self.pools.set_state(member.instance_id, STOPPED)
        self._emit(WARM_STOPPED, member.instance_id)

    def _terminate(self, member: WarmInstance, kind: str = WARM_ABANDONED) -> None:
        self.pools.remove(member.instance_id)
        self._emit(kind, member.instance_id)
        self.backend.client("ec2").terminate_instances(InstanceIds=[member.instance_id])
