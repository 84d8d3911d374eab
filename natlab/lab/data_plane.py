"""A lab's data plane: its emulated VPC (:mod:`natlab.cloud.dataplane`), built when the first instance boots."""

from __future__ import annotations

import threading
from collections.abc import Callable

from natlab.cloud.backend import Backend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.netns import Namespace
from natlab.cloud.route_sync import RouterEvent
from natlab.lab.pacing import ROUTE_SYNC_IDLE_INTERVAL
from natlab.lab.vpc_lookup import lab_vpc_id


class LabDataPlane:
    """The emulated VPC of the lab named ``lab_name``: built when the first instance attaches to it,
    closed with the lab's emulated cloud.
    """

    def __init__(self, backend: Backend, lab_name: str, on_router_event: Callable[[RouterEvent], None]) -> None:
        self.backend = backend
        self.lab_name = lab_name
        self.on_router_event = on_router_event
        self.vpc: EmulatedVpc | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def attach(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None:
        self._built_vpc(ip_cidr.split("/")[0]).attach(ns, ifname=ifname, mac=mac, ip_cidr=ip_cidr)

    def _built_vpc(self, booting_ip: str) -> EmulatedVpc:
        """The emulated VPC, built from the emulator's view on first use (by the first boot).

        The fixture's module depends on the whole network, so when its first instance boots the
        VPC has every subnet, route table and association it will have.
        """
        with self._lock:
            if self._error is not None:
                raise RuntimeError("the emulated VPC could not be built") from self._error
            if self.vpc is None:
                try:
                    ec2 = self.backend.client("ec2")
                    vpc_id = lab_vpc_id(ec2, self.lab_name, booting_ip)
                    vpc = EmulatedVpc(
                        ec2, vpc_id, poll_interval=ROUTE_SYNC_IDLE_INTERVAL, on_event=self.on_router_event
                    )
                    self.vpc = vpc.open()
                except BaseException as error:
                    self._error = error
                    raise
            return self.vpc

    def close(self) -> None:
        with self._lock:
            if self.vpc is not None:
                self.vpc.close()

    def check(self) -> None:
        """Raises the data plane's build error, if any (a boot that could not attach never serves)."""
        if self._error is not None:
            raise RuntimeError(f"the emulated VPC could not be built: {self._error!r}") from self._error
