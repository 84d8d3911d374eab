"""One applied fixture with everything that makes it behave like AWS: the NAT lab a scenario runs in.

Start order matters. The instance fleet (every launched instance boots its real user data) and the
Auto Scaling health controller start first; then the fixture is applied, in one go. The data plane
(the emulated VPC's namespaces, :mod:`natlab.lab.data_plane`) is built when the first instance
boots: the fixture's module waits for the whole network, so the VPC is complete by then, and the
first NAT boots exactly as a replacement will.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from natlab.cloud.asg_controller import AsgHealthController
from natlab.cloud.backend import Backend, MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.fleet import FleetEvent, InstanceFleet
from natlab.cloud.image import DnfModel, Image
from natlab.cloud.netns_available import unavailable_reason
from natlab.cloud.reboots import REBOOTS
from natlab.cloud.route_sync import RouterEvent
from natlab.cloud.sandbox import InstanceSandbox
from natlab.cloud.warm_pool import WARM
from natlab.lab.backend_traits import ami_vars, loopback_port, plain_http
from natlab.lab.data_plane import LabDataPlane
from natlab.lab.emulator_races import apply_retrying_emulator_races
from natlab.lab.pacing import CONTROLLER_DELAYS, FLEET_POLL_INTERVAL, REBOOT_DELAY, ROUTE_SYNC_INTERVAL
from natlab.lab.settings import HarnessSettings
from natlab.lab.spot import SpotInterruption, interrupt_spot
from natlab.lab.terraform import TerraformWorkdir
from natlab.lab.zones import Zone, zones_from_outputs
from natlab.report.timeline import REPLACEMENT_LAUNCHED, SOURCE_ASG, SOURCE_ROUTER, Timeline
from natlab.resource import Resource
from natlab.waiting import wait_until

logger = logging.getLogger(__name__)

#: A change to an instance's user data before it boots (a deliberately broken boot script).
UserDataTransform = Callable[[bytes], bytes]


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
        self.fleet: InstanceFleet | None = None
        self.controller: AsgHealthController | None = None
        self.dataplane_skip_reason: str | None = None
        self._transform: UserDataTransform | None = None
        self._next_boot_dnf: DnfModel | None = None
        self.dnf_faulted: list[str] = []
        """Instances that booted with the dnf of :meth:`dnf_on_next_boot`."""
        self._timeline: Timeline | None = None
        self._data_plane = LabDataPlane(backend, config.name, on_router_event=self._on_router_event)
        self._stack = contextlib.ExitStack()
        self._cloud = contextlib.ExitStack()  # the emulated cloud's parts: closed before the destroy
        self.terraform = TerraformWorkdir(
            config.fixture,
            tf_vars=backend.tf_vars() | {"run_id": run_id, "name": config.name} | ami_vars(backend) | config.tf_vars,
            env=backend.env(),
            keep=settings.keep,
            shared_provider=plain_http(backend.endpoint_url),
        )

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> Self:
        self._stack.enter_context(self.terraform)
        self._stack.enter_context(self._cloud)
        self.dataplane_skip_reason = self._dataplane_unavailable()
        self._cloud.callback(self._data_plane.close)  # after the fleet: instances leave the VPC first
        if isinstance(self.backend, MotoBackend):
            # moto has no health loop; LocalStack and AWS have their own.
            self.controller = self._cloud.enter_context(
                AsgHealthController(self.backend, delays=CONTROLLER_DELAYS, on_event=self._on_asg_event)
            )
        port = loopback_port(self.backend.endpoint_url)
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
                    attach=self._data_plane.attach if self.dataplane_skip_reason is None else None,
                )
            )
        if isinstance(self.backend, MotoBackend):
            apply_retrying_emulator_races(self.terraform, self.ec2)
        else:
            self.terraform.apply()
        self.outputs = self.terraform.outputs()
        self.zones = zones_from_outputs(self.outputs)
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

    # --- the data plane, built when the first instance boots ---------------------------------

    @property
    def vpc(self) -> EmulatedVpc | None:
        """The data plane's emulated VPC, once the first instance booted (:mod:`natlab.lab.data_plane`)."""
        return self._data_plane.vpc

    def _dataplane_unavailable(self) -> str | None:
        if not self.config.dataplane:
            return "the data plane is off for this lab"
        if not isinstance(self.backend, MotoBackend):
            return f"the data plane runs only with the embedded emulator, not --backend {self.backend.name}"
        return unavailable_reason()

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
            self._data_plane.check()
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
