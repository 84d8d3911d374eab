"""A fleet that follows the emulator: a booted sandbox for every running Auto Scaling instance.

On AWS, EC2 boots an instance and runs its user data; an emulator only records it. ``InstanceFleet``
plays EC2's part: it polls the emulator and boots an ``InstanceSandbox`` (``sandbox.py``) for each
new running instance of an Auto Scaling group (or of its warm pool), and kills it (namespace and
all) when the instance is terminated or stopped. A stopped instance that runs again (started out of
a warm pool) boots from its own disk, the instance dir its first boot left: the systemd units that
boot enabled run, not the user data (cloud-init runs that once). A rebooted instance (RebootInstances,
counted by its moto fix in ``reboots.REBOOTS``) loses its sandbox's processes and namespace (its
kernel state) and, after a modelled reboot time, starts again the same way from its disk.
"""

from __future__ import annotations

import base64
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natlab.module.user_data_payload import as_cloud_init_reads
from natlab.resource import Resource
from natlab.waiting import wait_until

from .clients import aws_client
from .image import Image
from .imds import InstanceIdentity
from .reboots import REBOOT_SECONDS, RebootRegistry
from .sandbox import InstanceSandbox
from .warm_pool import WarmPools

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
STOPPED_STATES = frozenset({"stopping", "stopped"})
#: What a start of a stopped instance saves over a launch: RunInstances and placement, ~1.5-5 s
#: (shared/AWS-NOTES.md, "Boot"): the OS boots all the same. An estimate, taken off --boot-delay.
LAUNCH_ONLY_SECONDS = 3.0
ASG_TAG = "aws:autoscaling:groupName"


@dataclass(frozen=True)
class FleetEvent:
    """Something that happened to an instance, for the timeline."""

    time: float
    """``time.time()`` of the event."""
    kind: str
    """``boot-start`` | ``start`` (a stopped instance started again) | ``boot-exit`` | ``boot-failed`` |
    ``stopped`` | ``rebooted`` | ``terminated``"""
    instance_id: str
    detail: dict[str, Any] = field(default_factory=dict)


def identity_from_backend(ec2: Any, instance: Mapping[str, Any], region: str) -> InstanceIdentity:
    """Build an ``InstanceIdentity`` from a DescribeInstances item (plus its VPC and subnet)."""
    primary = next(n for n in instance["NetworkInterfaces"] if n.get("Attachment", {}).get("DeviceIndex", 0) == 0)
    vpc = ec2.describe_vpcs(VpcIds=[instance["VpcId"]])["Vpcs"][0]
    cidrs = tuple(
        a["CidrBlock"]
        for a in vpc.get("CidrBlockAssociationSet", [])
        if a.get("CidrBlockState", {}).get("State", "associated") == "associated"
    ) or (vpc["CidrBlock"],)
    subnet = ec2.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]
    return InstanceIdentity(
        instance_id=instance["InstanceId"],
        region=region,
        az=instance["Placement"]["AvailabilityZone"],
        mac=primary["MacAddress"],
        interface_id=primary["NetworkInterfaceId"],
        private_ip=primary.get("PrivateIpAddress") or instance["PrivateIpAddress"],
        subnet_id=instance["SubnetId"],
        vpc_id=instance["VpcId"],
        vpc_cidrs=cidrs,
        subnet_cidr=subnet["CidrBlock"],
        ami_id=instance.get("ImageId", "ami-00000000000000000"),
        instance_type=instance.get("InstanceType", "t4g.nano"),
    )


def user_data_from_backend(ec2: Any, instance: Mapping[str, Any]) -> bytes:
    """The instance's user data as cloud-init runs it (base64-decoded, gzip-expanded).

    moto 5.2.5 returns the launch template's user data from DescribeInstanceAttribute(userData) for
    ASG-launched instances (checked). Should it ever come back empty, fall back to the launch
    template version named by the instance's ``aws:ec2launchtemplate:*`` tags.
    """
    attr = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    value = attr.get("UserData", {}).get("Value")
    if value:
        return as_cloud_init_reads(base64.b64decode(value))
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    template = tags.get("aws:ec2launchtemplate:id")
    if not template:
        return b""
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=template, Versions=[tags.get("aws:ec2launchtemplate:version", "$Latest")]
    )
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("UserData", "")
    return as_cloud_init_reads(base64.b64decode(data)) if data else b""


class InstanceFleet(Resource):
    """Boots a sandbox for every running Auto Scaling instance the emulator has.

    A thread polls DescribeAutoScalingGroups + DescribeInstances every ``poll_interval`` seconds.
    A new running instance (in an ASG, or tagged ``aws:autoscaling:groupName``) gets an
    ``InstanceSandbox``; an instance that turns shutting-down/terminated/stopping/stopped has its
    sandbox terminated (namespace deleted, files kept until ``close()``). ``events`` (and the
    ``on_event`` callback, called from the fleet's threads) record boot-start/boot-exit/terminated.
    ``sandbox_kwargs`` go to every ``InstanceSandbox`` (env, attach, boot_delay,
    user_data_transform, keep, image); ``image_for(instance id)``, when given, picks each
    instance's image instead.
    """

    def __init__(
        self,
        backend_port: int,
        *,
        region: str = "us-east-1",
        workdir: Path | None = None,
        poll_interval: float = 0.2,
        on_event: Callable[[FleetEvent], None] | None = None,
        image_for: Callable[[str], Image] | None = None,
        warm_pools: WarmPools | None = None,
        reboots: RebootRegistry | None = None,
        reboot_seconds: float = REBOOT_SECONDS,
        **sandbox_kwargs: Any,
    ) -> None:
        """``warm_pools`` (``natlab.cloud.warm_pool.WARM``): an instance it knows boots even outside a
        group, with IMDS saying its target lifecycle state (other group instances are told
        ``InService``), and a stop it counts ends the sandbox even if no poll saw the instance stopped
        (a pool instance can be stopped and started again between two polls). ``reboots``
        (``natlab.cloud.reboots.REBOOTS``): a reboot it counts restarts the instance's sandbox from its
        disk; the units start ``reboot_seconds`` later (or after ``boot_delay`` less the launch, if longer)."""
        self.backend_port = backend_port
        self.region = region
        self.poll_interval = poll_interval
        self.on_event = on_event
        self.image_for = image_for
        self.warm_pools = warm_pools
        self.reboots = reboots
        self.reboot_seconds = reboot_seconds
        self.sandbox_kwargs = sandbox_kwargs
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="natlab-fleet-")) if workdir is None else Path(workdir)
        self.sandboxes: dict[str, InstanceSandbox] = {}
        self.events: list[FleetEvent] = []
        self._failed: set[str] = set()
        self._stopped: set[str] = set()  # instances whose sandbox died because they were stopped
        self._stops_at_boot: dict[str, int] = {}  # instance id -> warm_pools' stop count at its boot
        self._reboots_at_boot: dict[str, int] = {}  # instance id -> reboots' count at its boot
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        endpoint_url = f"http://127.0.0.1:{backend_port}"
        self._ec2 = aws_client("ec2", endpoint_url=endpoint_url, region=region)
        self._asg = aws_client("autoscaling", endpoint_url=endpoint_url, region=region)

    def start(self) -> InstanceFleet:
        """Start watching (one poll happens before returning)."""
        self.poll_once()
        self._thread = threading.Thread(target=self._loop, name="natlab-fleet", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching and close every sandbox. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            boxes = list(self.sandboxes.values())
        for box in boxes:
            try:
                box.close()
            except Exception:
                log.exception("closing %s failed", box.identity.instance_id)
        if self._own_workdir and not self.sandbox_kwargs.get("keep"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _emit(self, kind: str, instance_id: str, **detail: Any) -> None:
        event = FleetEvent(time.time(), kind, instance_id, detail)
        with self._lock:
            self.events.append(event)
        log.info("fleet: %s %s %s", kind, instance_id, detail or "")
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except Exception as exc:  # emulator reset/restart: keep watching
                log.warning("fleet poll failed: %s", exc)

    # -- following the emulator --------------------------------------------------------------------

    def _asg_instances(self) -> set[str]:
        ids: set[str] = set()
        for page in self._asg.get_paginator("describe_auto_scaling_groups").paginate():
            for group in page["AutoScalingGroups"]:
                ids.update(i["InstanceId"] for i in group.get("Instances", []))
        return ids

    def _instances(self) -> Iterator[dict[str, Any]]:
        for page in self._ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                yield from reservation["Instances"]

    def poll_once(self) -> None:
        """One look at the emulator: boot new ASG instances, terminate dead ones."""
        members = self._asg_instances()
        with self._lock:
            for instance in self._instances():
                iid, state = instance["InstanceId"], instance["State"]["Name"]
                in_asg = iid in members or ASG_TAG in {t["Key"] for t in instance.get("Tags", [])}
                in_asg = in_asg or self._target_state(iid) is not None
                box = self.sandboxes.get(iid)
                if box is not None and not box.terminated and self._stopped_since_boot(iid):
                    box.terminate()
                    self._stopped.add(iid)
                    self._emit("stopped", iid, state=state)
                    # ``state`` may have been read before this stop: a start again shows at the next look
                    # (read at once, a stale "running" restarted a warm instance just stopped in its pool).
                    continue
                if box is not None and not box.terminated and state == "running" and self._rebooted_since_boot(iid):
                    self._reboot(box, instance)
                elif box is None and in_asg and state == "running" and iid not in self._failed:
                    self._boot(instance)
                elif box is not None and box.terminated and state == "running" and iid in self._stopped:
                    self._stopped.discard(iid)
                    self._boot(instance, started_again=True)
                elif box is not None and state in TERMINAL_STATES and not box.terminated:
                    box.terminate()
                    if state in STOPPED_STATES:
                        self._stopped.add(iid)
                    self._emit("stopped" if state in STOPPED_STATES else "terminated", iid, state=state)

    def _boot(self, instance: dict[str, Any], started_again: bool = False, rebooted: bool = False) -> None:
        """Boot a sandbox for ``instance``; one that fails to boot is closed and never retried.

        ``started_again``: the instance ran before and was stopped (or ``rebooted``); its instance dir is its disk.
        """
        iid = instance["InstanceId"]
        if self.warm_pools is not None:
            self._stops_at_boot[iid] = self.warm_pools.stops(iid)
        if self.reboots is not None:
            self._reboots_at_boot[iid] = self.reboots.count(iid)
        kwargs = dict(self.sandbox_kwargs)
        if started_again:
            kwargs["boot_delay"] = max(0.0, kwargs.get("boot_delay", 0.0) - LAUNCH_ONLY_SECONDS)
        if rebooted:
            kwargs["boot_delay"] = max(self.reboot_seconds, kwargs["boot_delay"])
        try:
            identity = identity_from_backend(self._ec2, instance, self.region)
            user_data = user_data_from_backend(self._ec2, instance)
            image = {"image": self.image_for(iid)} if self.image_for is not None else {}
            box = InstanceSandbox(
                identity,
                user_data,
                self.backend_port,
                workdir=self.workdir,
                on_exit=self._exited,
                target_lifecycle_state=self._target_state(iid) or "InService",
                started_again=started_again,
                **kwargs,
                **image,
            )
            self.sandboxes[iid] = box
            box.open()  # closes what it made if the boot fails half-way
        except Exception as exc:
            self._failed.add(iid)
            self.sandboxes.pop(iid, None)
            log.exception("booting %s failed", iid)
            self._emit("boot-failed", iid, error=repr(exc))
            return
        self._emit(
            "start" if started_again else "boot-start",
            iid,
            netns=box.ns.name if box.ns else None,
            private_ip=identity.private_ip,
            eni=identity.interface_id,
            boot_delay=box.boot_delay,
        )

    def _reboot(self, box: InstanceSandbox, instance: dict[str, Any]) -> None:
        """What a reboot loses (processes, namespace: the kernel's state) goes; the disk stays for the restart."""
        box.terminate()
        self._emit("rebooted", box.identity.instance_id)
        self._boot(instance, started_again=True, rebooted=True)

    def _rebooted_since_boot(self, instance_id: str) -> bool:
        if self.reboots is None:
            return False
        return self.reboots.count(instance_id) > self._reboots_at_boot.get(instance_id, 0)

    def _target_state(self, instance_id: str) -> str | None:
        return self.warm_pools.target_state(instance_id) if self.warm_pools is not None else None

    def _stopped_since_boot(self, instance_id: str) -> bool:
        if self.warm_pools is None:
            return False
        return self.warm_pools.stops(instance_id) > self._stops_at_boot.get(instance_id, 0)

    def _exited(self, box: InstanceSandbox, code: int) -> None:
        if not box.terminated:
            self._emit("boot-exit", box.identity.instance_id, exit_code=code)

    # -- queries -----------------------------------------------------------------------------------

    def get(self, instance_id: str) -> InstanceSandbox | None:
        """The sandbox of ``instance_id`` (also for dead instances), if any."""
        with self._lock:
            return self.sandboxes.get(instance_id)

    def live(self) -> list[InstanceSandbox]:
        """Sandboxes of instances not terminated."""
        with self._lock:
            return [b for b in self.sandboxes.values() if not b.terminated]

    def wait_for(self, predicate: Callable[[InstanceFleet], InstanceSandbox | None], timeout: float) -> InstanceSandbox:
        """Poll ``predicate(fleet)`` with backoff until it returns a sandbox, or TimeoutError.

        The predicate may raise while a sandbox is half-booted: that counts as "not yet".
        """
        try:
            return wait_until(
                lambda: predicate(self),
                what="sandbox matching the predicate",
                timeout=timeout,
                interval=0.01,
                max_interval=0.2,
                retry_on=(Exception,),
            )
        except TimeoutError as error:
            raise TimeoutError(f"{error} (sandboxes: {sorted(self.sandboxes)})") from error

    def wait_booted(self, instance_id: str, timeout: float) -> InstanceSandbox:
        """Wait until ``instance_id`` has a sandbox; return it."""
        return self.wait_for(lambda fleet: fleet.get(instance_id), timeout)

    def describe(self) -> str:
        """Every sandbox's failure-report block (console, boot log, shim calls, repro command)."""
        with self._lock:
            boxes = list(self.sandboxes.values())
        return "\n".join(box.describe() for box in boxes) or "(no instance booted)\n"
