"""One applied fixture with everything that makes it behave like AWS: the NAT lab a scenario runs in.

Start order matters. The network is applied first (targeted), so the data plane can be built from
the emulator's view before any NAT exists; then the instance fleet (every launched instance boots
its real user data) and the Auto Scaling health controller start, and only then is the module
applied, so the first NAT boots exactly as a replacement will.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from natlab.cloud.asg_controller import AsgHealthController, AwsDelays
from natlab.cloud.backend import MOTO_AL2023_ARM64_AMI, Backend, MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.fleet import InstanceFleet
from natlab.cloud.netns import unavailable_reason
from natlab.cloud.sandbox import InstanceSandbox
from natlab.lab.settings import HarnessSettings
from natlab.lab.terraform import TerraformWorkdir
from natlab.report.timeline import REPLACEMENT_LAUNCHED, SOURCE_ASG, SOURCE_ROUTER, Timeline

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Everything of the fixture but the module: applied first so the data plane exists before any NAT.
NETWORK_TARGETS = [
    "aws_route.public_internet",
    "aws_route_table_association.public",
    "aws_route_table_association.private",
    "aws_eip.existing",
]

#: AWS's health-check, status-check and alarm delays scaled down 50x (30 s -> 0.6 s), so the fault
#: matrix runs in seconds; boot time is modelled separately (--boot-delay).
#: The launch hook's heartbeat is not scaled: boots run in real time.
CONTROLLER_DELAYS = dataclasses.replace(AwsDelays.fast(0.02), lifecycle_timeout=None)


@dataclass
class Zone:
    """What the module made for one availability zone, from the fixture's outputs."""

    name: str
    asg_name: str
    route_table_ids: list[str]
    private_subnet_id: str
    alarm_name: str | None
    eip_allocation_id: str | None


@dataclass
class LabConfig:
    fixture: str
    name: str
    tf_vars: dict[str, Any] = field(default_factory=dict)
    dataplane: bool = True


class Lab:
    """A context manager: the applied fixture, its booted NATs, data plane and health controller."""

    def __init__(self, backend: Backend, config: LabConfig, settings: HarnessSettings, run_id: str) -> None:
        self.backend = backend
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.timeline = Timeline()
        self.sabotage: Callable[[bytes], bytes] | None = None
        self.zones: dict[str, Zone] = {}
        self.outputs: dict[str, Any] = {}
        self.vpc: EmulatedVpc | None = None
        self.fleet: InstanceFleet | None = None
        self.controller: AsgHealthController | None = None
        self.dataplane_skip_reason: str | None = None
        self._stack = contextlib.ExitStack()
        self.terraform = TerraformWorkdir(
            config.fixture,
            tf_vars=backend.tf_vars() | {"run_id": run_id, "name": config.name} | _ami(backend) | config.tf_vars,
            env=backend.env(),
            keep=settings.keep,
        )

    # --- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        self._stack.enter_context(self.terraform)
        self.terraform.apply(targets=NETWORK_TARGETS)
        self.dataplane_skip_reason = self._dataplane_unavailable()
        if self.dataplane_skip_reason is None:
            self.vpc = self._stack.enter_context(EmulatedVpc(self.ec2, self._vpc_id(), on_event=self._on_router_event))
        if isinstance(self.backend, MotoBackend):
            # moto has no health loop; LocalStack and AWS have their own.
            self.controller = self._stack.enter_context(
                AsgHealthController(self.backend, delays=CONTROLLER_DELAYS, on_event=self._on_asg_event)
            )
        port = _loopback_port(self.backend.endpoint_url)
        if port is not None:
            # Emulators run no instance: boot each one here (on AWS, EC2 does).
            sandbox_options: dict[str, Any] = {
                "boot_delay": self.settings.boot_delay,
                "user_data_transform": self._transform_user_data,
                "keep": self.settings.keep,
            }
            if self.vpc is not None:
                sandbox_options["attach"] = self.vpc.attach
            self.fleet = self._stack.enter_context(
                InstanceFleet(
                    port,
                    region=self.backend.region,
                    on_event=self._on_fleet_event,
                    poll_interval=0.05,
                    **sandbox_options,
                )
            )
        self.terraform.apply()
        self.outputs = self.terraform.outputs()
        self.zones = self._zones_from_outputs()
        for zone in self.zones:
            self.wait_until_serving(zone, timeout=self.settings.sla)

    def destroy(self) -> None:
        """terraform destroy now (the scenario that checks nothing is left behind calls it)."""
        self.terraform.destroy()

    def _dataplane_unavailable(self) -> str | None:
        if not self.config.dataplane:
            return "the data plane is off for this lab"
        if not isinstance(self.backend, MotoBackend):
            return f"the data plane runs only with the embedded emulator, not --backend {self.backend.name}"
        return unavailable_reason()

    # --- the emulator's view -----------------------------------------------------------------

    @property
    def ec2(self) -> Any:
        return self.backend.client("ec2")

    @property
    def autoscaling(self) -> Any:
        return self.backend.client("autoscaling")

    def _vpc_id(self) -> str:
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [self.config.name]}])["Vpcs"]
        if len(vpcs) != 1:
            raise RuntimeError(f"expected one VPC named {self.config.name}, found {len(vpcs)}")
        return vpcs[0]["VpcId"]

    def _zones_from_outputs(self) -> dict[str, Zone]:
        out = self.outputs
        return {
            zone: Zone(
                name=zone,
                asg_name=asg,
                route_table_ids=list(out["zones"][zone]["private_route_table_ids"]),
                private_subnet_id=out["zones"][zone]["private_subnet_id"],
                alarm_name=out["status_check_alarm_names"].get(zone),
                eip_allocation_id=out["elastic_ip_allocation_ids"].get(zone),
            )
            for zone, asg in out["autoscaling_group_names"].items()
        }

    def in_service(self, zone: str) -> list[str]:
        """Instance ids of the zone's group that are InService."""
        group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.zones[zone].asg_name])[
            "AutoScalingGroups"
        ][0]
        return [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]

    def primary_eni(self, instance_id: str) -> str:
        reservation = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
        interfaces = reservation["Instances"][0]["NetworkInterfaces"]
        return next(i["NetworkInterfaceId"] for i in interfaces if i["Attachment"]["DeviceIndex"] == 0)

    def route_targets(self, zone: str) -> dict[str, str | None]:
        """Route table id -> the ENI its default route targets (None when there is no such route)."""
        tables = self.ec2.describe_route_tables(RouteTableIds=self.zones[zone].route_table_ids)["RouteTables"]
        destination = self.terraform.tf_vars.get("route_destination_cidr", "0.0.0.0/0")
        return {
            table["RouteTableId"]: next(
                (r.get("NetworkInterfaceId") for r in table["Routes"] if r.get("DestinationCidrBlock") == destination),
                None,
            )
            for table in tables
        }

    def current_nat(self, zone: str) -> str:
        """The zone's one InService instance (fails if there is not exactly one)."""
        serving = self.in_service(zone)
        if len(serving) != 1:
            raise AssertionError(f"{zone}: expected exactly one InService NAT, found {serving}")
        return serving[0]

    def wait_until_serving(self, zone: str, timeout: float) -> str:
        """Waits until one InService NAT exists and every route of the zone targets its ENI."""

        def serving() -> str:
            instance = self.current_nat(zone)
            eni = self.primary_eni(instance)
            targets = self.route_targets(zone)
            if set(targets.values()) != {eni}:
                raise AssertionError(f"{zone}: routes {targets} do not all target {eni} of {instance}")
            return instance

        return poll(serving, what=f"a serving NAT in {zone}", timeout=timeout)

    # --- hooks from the parts ----------------------------------------------------------------

    def _transform_user_data(self, user_data: bytes) -> bytes:
        return self.sabotage(user_data) if self.sabotage else user_data

    def _on_asg_event(self, kind: str, instance_id: str, t: float) -> None:
        name = REPLACEMENT_LAUNCHED if kind == "launched" else f"asg-{kind}"
        self.timeline.mark(name, SOURCE_ASG, instance_id, wall=t)

    def _on_fleet_event(self, event: Any) -> None:
        if event.kind != "boot-start":  # the boot log itself marks the start, to the millisecond
            self.timeline.mark(f"instance-{event.kind}", SOURCE_ASG, event.instance_id)

    def _on_router_event(self, event: Any) -> None:
        self.timeline.mark(f"router-{event.kind}", SOURCE_ROUTER, event.text, at=event.mono)

    # --- diagnostics -------------------------------------------------------------------------

    def sandbox(self, instance_id: str) -> InstanceSandbox | None:
        return self.fleet.get(instance_id) if self.fleet else None

    def diagnostics(self) -> dict[str, str]:
        """What a person needs when a scenario fails: logs, routes, router state, Terraform."""
        sections: dict[str, str] = {}
        if self.fleet:
            sections["instances"] = self.fleet.describe()
        with contextlib.suppress(Exception):
            sections["route tables"] = "\n".join(f"{zone}: {self.route_targets(zone)}" for zone in self.zones)
        if self.vpc:
            with contextlib.suppress(Exception):
                sections["router"] = "\n".join(self.vpc.timeline()[-30:]) + "\n" + self.vpc.kernel_state()
        sections["terraform"] = self.terraform.transcript(last=2)[-6000:]
        sections["reproduce"] = self.terraform.reproduce_command()
        return sections

    def how_to_reach(self) -> str:
        """Printed with --keep: where the lab lives after the run."""
        lines = [f"Terraform workdir: {self.terraform.workdir}", f"emulator endpoint: {self.backend.endpoint_url}"]
        if self.vpc:
            lines.append(f"router namespace: ip netns exec {self.vpc.router.name} ip route")
            lines += [f"workload {w.subnet_id}: ip netns exec {w.ns.name} bash" for w in self.vpc.workloads.values()]
        if self.fleet:
            lines += [f"instance {box.identity.instance_id}: {box.dir}" for box in self.fleet.live()]
        return "\n".join(lines)


def _loopback_port(endpoint_url: str | None) -> int | None:
    """The port of an emulator on this machine's loopback (instances reach it through a relay)."""
    if not endpoint_url:
        return None
    parsed = urlparse(endpoint_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def _ami(backend: Backend) -> dict[str, str]:
    """On moto, its own AL2023 image; elsewhere the module looks the latest one up."""
    return {"ami_id": MOTO_AL2023_ARM64_AMI} if isinstance(backend, MotoBackend) else {}


def poll(probe: Callable[[], T], *, what: str, timeout: float, interval: float = 0.05) -> T:
    """Calls ``probe`` every ``interval`` s until it returns; TimeoutError from its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except (AssertionError, LookupError) as error:
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"no {what} after {timeout:.1f} s: {error}") from error
        time.sleep(interval)
