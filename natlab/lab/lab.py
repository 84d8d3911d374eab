"""One applied fixture with everything that makes it behave like AWS: the NAT lab a scenario runs in.

Start order matters. The instance fleet (every launched instance boots its real user data) and the
Auto Scaling health controller start first; then the fixture is applied, in one go. The data plane
(the emulated VPC's namespaces) is built when the first instance boots: the fixture's module waits
for the whole network, so the VPC is complete by then, and the first NAT boots exactly as a
replacement will.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlparse

from natlab.cloud.asg_controller import AsgHealthController
from natlab.cloud.aws_delays import AwsDelays
from natlab.cloud.backend import MOTO_AL2023_ARM64_AMI, Backend, MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.fleet import FleetEvent, InstanceFleet
from natlab.cloud.image import DnfModel, Image
from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import unavailable_reason
from natlab.cloud.reboots import REBOOT_SECONDS, REBOOTS
from natlab.cloud.route_sync import RouterEvent
from natlab.cloud.sandbox import InstanceSandbox
from natlab.cloud.warm_pool import WARM
from natlab.lab.emulator_races import apply_retrying_emulator_races
from natlab.lab.settings import HarnessSettings
from natlab.lab.spot import SpotInterruption, interrupt_spot
from natlab.lab.terraform import TerraformWorkdir
from natlab.lab.vpc_lookup import lab_vpc_id
from natlab.report.timeline import REPLACEMENT_LAUNCHED, SOURCE_ASG, SOURCE_ROUTER, Timeline
from natlab.resource import Resource
from natlab.waiting import wait_until

logger = logging.getLogger(__name__)

#: A change to an instance's user data before it boots (a deliberately broken boot script).
UserDataTransform = Callable[[bytes], bytes]

# How often the emulated cloud's parts look at the emulator. Every look is a few API calls, and
# moto spends 4-7 ms of this process's CPU on each: polling at 20-50 Hz all the time, an idle
# one-zone lab used 0.86 CPU-seconds a second (route sync 0.54, fleet 0.23, health controller 0.2)
# of this 2-core machine. The fleet and the controller poll at their own defaults (5 Hz): a launch
# boots, and a stopped or impaired NAT is acted on after its (scaled) AWS delay, within 0.2 s more.
# The router syncs at 20 Hz while a scenario watches (``Lab.watching_closely``: a route change is
# in its kernel within tens of milliseconds, as measured in the failover figures), at 2 Hz otherwise.
ROUTE_SYNC_INTERVAL = 0.05
ROUTE_SYNC_IDLE_INTERVAL = 0.5
FLEET_POLL_INTERVAL = 0.2

#: AWS's health-check, status-check and alarm delays scaled down 50x (30 s -> 0.6 s), so the fault
#: matrix runs in seconds; boot time is modelled separately (--boot-delay).
#: The launch hook's heartbeat is not scaled: boots run in real time.
AWS_DELAY_SCALE = 0.02
CONTROLLER_DELAYS = dataclasses.replace(AwsDelays.fast(AWS_DELAY_SCALE), poll_interval=0.2, lifecycle_timeout=None)
#: A reboot's OS shutdown and boot (``reboots.REBOOT_SECONDS``, 30 s, an estimate), scaled the same: 0.6 s.
REBOOT_DELAY = REBOOT_SECONDS * AWS_DELAY_SCALE


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


class Lab(Resource):
    """The applied fixture, its booted NATs, data plane and health controller (a ``Resource``)."""

    def __init__(self, backend: Backend, config: LabConfig, settings: HarnessSettings, run_id: str) -> None:
        self.backend = backend
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.zones: dict[str, Zone] = {}
        self.outputs: dict[str, Any] = {}
        self.vpc: EmulatedVpc | None = None
        self.fleet: InstanceFleet | None = None
        self.controller: AsgHealthController | None = None
        self.dataplane_skip_reason: str | None = None
        self._transform: UserDataTransform | None = None
        self._next_boot_dnf: DnfModel | None = None
        self.dnf_faulted: list[str] = []
        """Instances that booted with the dnf of :meth:`dnf_on_next_boot`."""
        self._timeline: Timeline | None = None
        self._vpc_lock = threading.Lock()
        self._vpc_error: BaseException | None = None
        self._stack = contextlib.ExitStack()
        self._cloud = contextlib.ExitStack()  # the emulated cloud's parts: closed before the destroy
        self.terraform = TerraformWorkdir(
            config.fixture,
            tf_vars=backend.tf_vars() | {"run_id": run_id, "name": config.name} | _ami(backend) | config.tf_vars,
            env=backend.env(),
            keep=settings.keep,
            shared_provider=_plain_http(backend.endpoint_url),
        )

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> Self:
        self._stack.enter_context(self.terraform)
        self._stack.enter_context(self._cloud)
        self.dataplane_skip_reason = self._dataplane_unavailable()
        self._cloud.callback(self._close_vpc)  # after the fleet: instances leave the VPC first
        if isinstance(self.backend, MotoBackend):
            # moto has no health loop; LocalStack and AWS have their own.
            self.controller = self._cloud.enter_context(
                AsgHealthController(self.backend, delays=CONTROLLER_DELAYS, on_event=self._on_asg_event)
            )
        port = _loopback_port(self.backend.endpoint_url)
        if port is not None:
            # Emulators run no instance: boot each one here (on AWS, EC2 does).
            self.fleet = self._cloud.enter_context(
                InstanceFleet(
                    port,
                    region=self.backend.region,
                    on_event=self._on_fleet_event,
                    poll_interval=FLEET_POLL_INTERVAL,
                    warm_pools=WARM if isinstance(self.backend, MotoBackend) else None,
                    reboots=REBOOTS if isinstance(self.backend, MotoBackend) else None,
                    reboot_seconds=REBOOT_DELAY,
                    boot_delay=self.settings.boot_delay,
                    user_data_transform=self._transform_user_data,
                    image_for=self._image_for,
                    keep=self.settings.keep,
                    attach=self._attach if self.dataplane_skip_reason is None else None,
                )
            )
        if isinstance(self.backend, MotoBackend):
            apply_retrying_emulator_races(self.terraform)
        else:
            self.terraform.apply()
        self.outputs = self.terraform.outputs()
        self.zones = self._zones_from_outputs()
        for zone in self.zones:
            self.wait_until_serving(zone, timeout=self.settings.sla)
        return self

    def close(self) -> None:
        self._stack.close()

    def destroy(self, *, cloud_running: bool = False) -> None:
        """terraform destroy now (the scenario that checks nothing is left behind calls it).

        By default the emulated cloud stops first, as at the end of every lab: its instances'
        namespaces go, and nothing polls the emulator while Terraform deletes what it made. With
        ``cloud_running`` it stops after the destroy instead, as on AWS: instances still booting
        meet their route tables, groups and hooks disappearing under them.
        """
        if not cloud_running:
            self._cloud.close()
        self.terraform.destroy()
        self._cloud.close()

    def _dataplane_unavailable(self) -> str | None:
        if not self.config.dataplane:
            return "the data plane is off for this lab"
        if not isinstance(self.backend, MotoBackend):
            return f"the data plane runs only with the embedded emulator, not --backend {self.backend.name}"
        return unavailable_reason()

    # --- the data plane, built when the first instance boots ---------------------------------

    def _attach(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None:
        self._data_plane(ip_cidr.split("/")[0]).attach(ns, ifname=ifname, mac=mac, ip_cidr=ip_cidr)

    def _data_plane(self, booting_ip: str) -> EmulatedVpc:
        """The emulated VPC, built from the emulator's view on first use (by the first boot).

        The fixture's module depends on the whole network, so when its first instance boots the
        VPC has every subnet, route table and association it will have.
        """
        with self._vpc_lock:
            if self._vpc_error is not None:
                raise RuntimeError("the emulated VPC could not be built") from self._vpc_error
            if self.vpc is None:
                try:
                    vpc_id = lab_vpc_id(self.ec2, self.config.name, booting_ip)
                    vpc = EmulatedVpc(
                        self.ec2, vpc_id, poll_interval=ROUTE_SYNC_IDLE_INTERVAL, on_event=self._on_router_event
                    )
                    self.vpc = vpc.open()
                except BaseException as error:
                    self._vpc_error = error
                    raise
            return self.vpc

    def _close_vpc(self) -> None:
        with self._vpc_lock:
            if self.vpc is not None:
                self.vpc.close()

    def _check_data_plane(self) -> None:
        """Raises the data plane's build error, if any (a boot that could not attach never serves)."""
        if self._vpc_error is not None:
            raise RuntimeError(f"the emulated VPC could not be built: {self._vpc_error!r}") from self._vpc_error

    # --- steering a scenario -----------------------------------------------------------------

    @contextlib.contextmanager
    def sabotaged(self, transform: UserDataTransform) -> Iterator[None]:
        """Instances that boot inside the block run ``transform(user data)``: a broken boot script.

        The instance's sandbox keeps both (``original_user_data`` and ``user_data``), so
        :meth:`ran_sabotaged_user_data` can tell such an instance later.
        """
        if self._transform is not None:
            raise RuntimeError("the lab is already sabotaged")
        self._transform = transform
        try:
            yield
        finally:
            self._transform = None

    def ran_sabotaged_user_data(self, instance_id: str) -> bool:
        """True if ``instance_id`` booted a user data changed by :meth:`sabotaged`."""
        box = self.sandbox(instance_id)
        return box is not None and box.user_data != box.original_user_data

    @contextlib.contextmanager
    def dnf_on_next_boot(self, dnf: DnfModel) -> Iterator[None]:
        """The first instance that boots inside the block finds ``dnf`` (e.g. one that always fails).

        Only the first: Auto Scaling's next try after an abandoned launch gets the lab's usual dnf.
        ``dnf_faulted`` names the instance.
        """
        self._next_boot_dnf = dnf
        try:
            yield
        finally:
            self._next_boot_dnf = None

    @contextlib.contextmanager
    def modelled_boot_delay(self, seconds: float) -> Iterator[None]:
        """Instances launched inside the block boot ``seconds`` after launch (``--boot-delay`` outside)."""
        if self.fleet is None:
            yield
            return
        kwargs = self.fleet.sandbox_kwargs
        before = kwargs.get("boot_delay", 0.0)
        kwargs["boot_delay"] = seconds
        try:
            yield
        finally:
            kwargs["boot_delay"] = before

    @contextlib.contextmanager
    def watching_closely(self) -> Iterator[None]:
        """The router follows the emulator's routes every ``ROUTE_SYNC_INTERVAL`` during the block.

        Outside it the router syncs every ``ROUTE_SYNC_IDLE_INTERVAL``: nothing measures it then.
        """
        sync = self.vpc.sync if self.vpc is not None else None
        if sync is None:
            yield
            return
        stop = threading.Event()

        def kick() -> None:
            # The sync's fast clock (a periodic loop, not a wait): one round every interval.
            while not stop.wait(ROUTE_SYNC_INTERVAL):
                sync.kick()

        kicker = threading.Thread(target=kick, name="route-sync-kicker", daemon=True)
        sync.kick()
        kicker.start()
        try:
            yield
        finally:
            stop.set()
            kicker.join()

    @contextlib.contextmanager
    def recording(self) -> Iterator[Timeline]:
        """A new timeline that gets what the emulated cloud does during the block.

        Launches and terminations (the health controller and the fleet) and the router's route and
        NAT changes; the scenario adds its own events (fault, probes, boot logs).
        """
        if self._timeline is not None:
            raise RuntimeError("the lab is already recording a timeline")
        timeline = self._timeline = Timeline()
        try:
            yield timeline
        finally:
            self._timeline = None

    # --- the emulator's view -----------------------------------------------------------------

    @property
    def ec2(self) -> Any:
        return self.backend.client("ec2")

    @property
    def autoscaling(self) -> Any:
        return self.backend.client("autoscaling")

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

    def group_instances(self, zone: str) -> dict[str, str]:
        """Instance id -> lifecycle state, for every instance of the zone's group."""
        group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.zones[zone].asg_name])[
            "AutoScalingGroups"
        ][0]
        return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}

    def in_service(self, zone: str) -> list[str]:
        """Instance ids of the zone's group that are InService."""
        return [instance for instance, state in self.group_instances(zone).items() if state == "InService"]

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
            self._check_data_plane()
            instance = self.current_nat(zone)
            eni = self.primary_eni(instance)
            targets = self.route_targets(zone)
            if set(targets.values()) != {eni}:
                raise AssertionError(f"{zone}: routes {targets} do not all target {eni} of {instance}")
            return instance

        return wait_until(serving, what=f"serving NAT in {zone}", timeout=timeout, interval=0.05, max_interval=0.5)

    @contextlib.contextmanager
    def interrupt_spot(self, zone: str) -> Iterator[SpotInterruption]:
        """EC2's Spot interruption notice in ``zone``'s NAT, then its termination (natlab.lab.spot)."""
        with interrupt_spot(self, zone) as interruption:
            yield interruption

    # --- hooks from the parts (called from their threads) ------------------------------------

    def _image_for(self, instance_id: str) -> Image:
        """The image of ``--image``, with the dnf of :meth:`dnf_on_next_boot` for the first boot in it."""
        dnf, self._next_boot_dnf = self._next_boot_dnf, None
        if dnf is None:
            return Image(self.settings.image)
        self.dnf_faulted.append(instance_id)
        return Image(self.settings.image, dnf=dnf)

    def _transform_user_data(self, user_data: bytes) -> bytes:
        transform = self._transform
        return transform(user_data) if transform else user_data

    def _on_asg_event(self, kind: str, instance_id: str, t: float) -> None:
        timeline = self._timeline
        if timeline is not None:
            name = REPLACEMENT_LAUNCHED if kind == "launched" else f"asg-{kind}"
            timeline.mark(name, SOURCE_ASG, instance_id, wall=t)

    def _on_fleet_event(self, event: FleetEvent) -> None:
        timeline = self._timeline
        if timeline is not None and event.kind != "boot-start":  # the boot log marks its start to the ms
            timeline.mark(f"instance-{event.kind}", SOURCE_ASG, event.instance_id)

    def _on_router_event(self, event: RouterEvent) -> None:
        timeline = self._timeline
        if timeline is not None:
            timeline.mark(f"router-{event.kind}", SOURCE_ROUTER, event.text, at=event.mono)

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


def _plain_http(endpoint_url: str | None) -> bool:
    """An emulator without TLS (where Terraform can share one provider process, see ``TerraformWorkdir``)."""
    return endpoint_url is not None and urlparse(endpoint_url).scheme == "http"


def _ami(backend: Backend) -> dict[str, str]:
    """On moto, its own AL2023 image; elsewhere the module looks the latest one up."""
    return {"ami_id": MOTO_AL2023_ARM64_AMI} if isinstance(backend, MotoBackend) else {}
