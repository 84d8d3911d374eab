"""One route takeover in the lab: a fresh instance boots a user data that must point N route tables at it.

What ``bench/seed_vs_ours.py`` measures and ``harness/test_seed.py`` checks, for any user data (the
seed script of 2015 or ours), in the same lab: moto (with natlab's fixes) and one
:class:`~natlab.cloud.sandbox.InstanceSandbox` running the user data as it is, with the real ``aws``
CLI and curl. Before the boot, every table's ``0.0.0.0/0`` route points at the ENI of a NAT that is
gone (a standalone ENI), as after a failover. Per run it records:

* ``switched_s``: from the sandbox starting the boot process (a few ms of mount set-up before bash
  reads the user data; the same for every script) until the last table's route points at the
  instance's ENI in the emulator. The emulator's models are read in-process every
  :data:`POLL_INTERVAL` s, so the figure is late by at most that; no API request is spent on it;
* ``api_calls``: every HTTP request the instance sent to the emulator (counted by its relay), by action;
* ``processes``: every ``aws`` and ``curl`` started, recorded by pass-through wrappers first on
  ``PATH`` that ``exec`` the real program (a bash start, ~2 ms, added to each; counted once each).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from natlab.cloud.backend import MotoBackend
from natlab.cloud.boot_env import SHIMS_DIR, SYSTEM_PATH, aws_cli_dir
from natlab.cloud.fleet import identity_from_backend
from natlab.cloud.image import Image
from natlab.cloud.sandbox import InstanceSandbox
from natlab.resource import Resource
from natlab.waiting import wait_until

log = logging.getLogger(__name__)

DESTINATION = "0.0.0.0/0"
VPC_CIDR = "10.0.0.0/16"
SUBNET_CIDR = "10.0.1.0/24"
POLL_INTERVAL = 0.005
RECORDED_PROGRAMS = ("aws", "curl")
EXEC_LOG_VARIABLE = "NATLAB_EXEC_LOG"
MAX_TABLES = 50


BAKED = Image("baked")


@dataclass(frozen=True)
class Scene:
    """What a user data is rendered for: the lab's region, zone, VPC and route tables."""

    region: str
    zone: str
    vpc_cidr: str
    route_table_ids: tuple[str, ...]


@dataclass(frozen=True)
class TakeoverRun:
    """One boot: when the routes moved, and what it took."""

    script: str
    tables: int
    exit_code: int
    started_at: float
    """``time.time()`` when the sandbox started the boot process (the zero of the offsets below)."""
    switched_s: float | None
    """Boot start -> last route at the instance's ENI (None: not every route moved)."""
    tables_switched: int
    api_calls: tuple[str, ...]
    api_call_offsets_s: tuple[float, ...]
    """When each of ``api_calls`` had been sent, in seconds from boot start."""
    processes: tuple[str, ...]
    """One ``"<program> <args>"`` per ``aws``/``curl`` started."""
    source_dest_check: bool
    imds_requests: tuple[str, ...]
    """``"<method> <path> <status>"`` per request IMDS answered."""
    console: str


def _wrapper(real: Path) -> str:
    """A pass-through that logs its command line, then becomes the real program (same process)."""
    return (
        "#!/bin/bash\n"
        f"# natlab takeover: records this start in ${EXEC_LOG_VARIABLE}, then runs {real}.\n"
        f'printf \'%s %s\\n\' "${{0##*/}}" "$*" >>"${{{EXEC_LOG_VARIABLE}:-/dev/null}}"\n'
        f'exec {real} "$@"\n'
    )


class TakeoverLab(Resource):
    """moto (its own unless one is given) and the recording wrappers; :meth:`run` boots one instance."""

    def __init__(self, backend: MotoBackend | None = None) -> None:
        self._own_backend = backend is None
        self.backend = backend or MotoBackend()
        self.dir: Path | None = None

    def start(self) -> Self:
        if self._own_backend:
            self.backend.start()
        self.dir = Path(tempfile.mkdtemp(prefix="natlab-takeover-"))
        wrappers = self.dir / "bin"
        wrappers.mkdir()
        for program in RECORDED_PROGRAMS:
            real = aws_cli_dir() / "aws" if program == "aws" else shutil.which(program)
            if real is None:
                raise FileNotFoundError(f"{program} is not installed: the takeover lab runs the real one")
            wrapper = wrappers / program
            wrapper.write_text(_wrapper(Path(real)))
            wrapper.chmod(0o755)
        return self

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._own_backend:
            self.backend.close()

    def run(
        self,
        user_data_for: Callable[[Scene], str],
        *,
        script: str,
        tables: int,
        imds_v1: bool = False,
        timeout: float = 120.0,
        image: Image = BAKED,
    ) -> TakeoverRun:
        """Boot one instance with ``user_data_for(scene)`` and measure its takeover of ``tables`` tables.

        The image is the baked one by default: the seed's AMI (amzn-ami-vpc-nat) came with its NAT
        set up, so ours is compared with nftables already there (a baked image, or a warm pool).
        """
        if not 1 <= tables <= MAX_TABLES:
            raise ValueError(f"tables: between 1 and {MAX_TABLES} route tables, not {tables}")
        if self.dir is None:
            raise RuntimeError("TakeoverLab is not started")
        self.backend.reset()
        ec2 = self.backend.client("ec2")
        scene, instance = _build_scene(ec2, self.backend.region, tables)
        identity = identity_from_backend(ec2, instance, scene.region)
        exec_log = self.dir / f"{identity.instance_id}.exec.log"
        path = f"{self.dir / 'bin'}:{SHIMS_DIR}:{aws_cli_dir()}:{SYSTEM_PATH}"
        env = {"PATH": path, EXEC_LOG_VARIABLE: str(exec_log)}
        user_data = user_data_for(scene).encode()
        assert self.backend.port is not None
        with InstanceSandbox(identity, user_data, self.backend.port, env=env, imds_v1=imds_v1, image=image) as box:
            switched_at = _wait_for_routes(box, scene, identity.interface_id, timeout)
            exit_code = box.wait(timeout=timeout)
            started = box.started_at or 0.0
            requests = box.relay.requests if box.relay else []
            imds = tuple(f"{r.method} {r.path} {r.status}" for r in box.imds_requests)
            console = box.console_log()
        eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[identity.interface_id])["NetworkInterfaces"][0]
        processes = tuple(exec_log.read_text().splitlines()) if exec_log.exists() else ()
        return TakeoverRun(
            script=script,
            tables=tables,
            exit_code=exit_code,
            started_at=started,
            switched_s=None if switched_at is None else round(switched_at - started, 4),
            tables_switched=_tables_at(scene, identity.interface_id),
            api_calls=tuple(r.action for r in requests),
            api_call_offsets_s=tuple(round(r.time - started, 4) for r in requests),
            processes=processes,
            source_dest_check=bool(eni["SourceDestCheck"]),
            imds_requests=imds,
            console=console,
        )


def _build_scene(ec2: Any, region: str, tables: int) -> tuple[Scene, dict[str, Any]]:
    """A VPC whose ``tables`` route tables send 0.0.0.0/0 to a dead NAT's ENI; a new instance in it."""
    zone = f"{region}a"
    vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR, AvailabilityZone=zone)["Subnet"]["SubnetId"]
    old_eni = ec2.create_network_interface(SubnetId=subnet, Description="the NAT that died")
    old_eni_id = old_eni["NetworkInterface"]["NetworkInterfaceId"]
    table_ids = []
    for _ in range(tables):
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock=DESTINATION, NetworkInterfaceId=old_eni_id)
        table_ids.append(table)
    reservation = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet)
    instance_id = reservation["Instances"][0]["InstanceId"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return Scene(region, zone, VPC_CIDR, tuple(table_ids)), instance


def _tables_at(scene: Scene, eni_id: str) -> int:
    """How many of the scene's tables send 0.0.0.0/0 to ``eni_id`` now (read from moto's models)."""
    route_tables = ec2_backends[DEFAULT_ACCOUNT_ID][scene.region].route_tables
    count = 0
    for table_id in scene.route_table_ids:
        routes = route_tables[table_id].routes  # a copy, made by moto
        route = next((r for r in routes if r.destination_cidr_block == DESTINATION), None)
        count += route is not None and route.interface is not None and route.interface.id == eni_id
    return count


def _wait_for_routes(box: InstanceSandbox, scene: Scene, eni_id: str, timeout: float) -> float | None:
    """``time.time()`` when every table first pointed at ``eni_id``; None if the boot ended first."""
    wanted = len(scene.route_table_ids)

    def switched_or_ended() -> float | bool:
        if _tables_at(scene, eni_id) == wanted:
            return time.time()
        return not box.running  # a boot that ended without moving every route never will

    # RuntimeError: moto changed a table's routes while they were read; read again.
    result = wait_until(
        switched_or_ended, what="route takeover", timeout=timeout, interval=POLL_INTERVAL, retry_on=(RuntimeError,)
    )
    return result if isinstance(result, float) else None


def median_spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (the spread reported with each figure)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"median": round(median, 4), "min": round(ordered[0], 4), "max": round(ordered[-1], 4)}
