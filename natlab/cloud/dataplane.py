"""The emulated VPC's data plane: real packets between namespaces, routed as the emulator says.

``EmulatedVpc(ec2, vpc_id)`` reads the VPC from the emulator and builds, all in namespaces it owns:

- a router namespace (``natlab-<run>-vpcN-rtr``, ip_forward=1) with one bridge and one routing table
  per subnet (see ``vpc_subnets.py``), the tables kept in sync with the subnets' route tables by
  ``RouteSync`` (see ``route_model.py``: IGW with 1:1 NAT, ENI targets, blackholes for dead ENIs and
  for ENIs whose source/dest check is on);
- an internet namespace linked only to the router (see ``internet.py``: servers on 203.0.113.10);
- a workload namespace per private subnet (``vpc_subnets.py``), from which ``probes.py`` sends traffic;
- instance namespaces are the sandbox's: ``attach()`` plugs one into its subnet's bridge;
- in the router, what EC2 filters besides routes (``vpc_filter.py``, followed by the same sync):
  security groups (stateful, ingress and egress), the source half of the source/dest check,
  link-local addresses.

Everything is removed by ``close()`` (also when the start in ``with`` or ``open()`` fails half-way):
the sync thread stops, then each namespace's processes are killed by PID before the namespace is
deleted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from natlab.resource import Resource
from natlab.waiting import wait_until

from . import flows, probes, tools
from .igw_nftables import nft_ruleset
from .internet import INTERNET_LINK_IP, ROUTER_IFNAME, Internet
from .netns import Namespace
from .netns_command import NamespaceError
from .netns_links import set_master
from .netns_names import NETNS_DIR
from .netns_sysctl import set_sysctl
from .route_model import SubnetPort, Target
from .route_sync import RouterEvent, RouteSync
from .vpc_filter import VpcFilter
from .vpc_subnets import Workload, add_workload, build_subnets, router_batch, wants_workload

log = logging.getLogger(__name__)

_vpc_counter = itertools.count(1)
_port_counter = itertools.count(1)


@dataclass
class Attachment:
    """An instance namespace plugged into a subnet bridge by ``EmulatedVpc.attach``."""

    instance_id: str | None
    ns_name: str
    ifname: str
    mac: str | None
    ip: str
    subnet_id: str
    router_ifname: str

    @property
    def alive(self) -> bool:
        """True while the instance namespace still exists."""
        return (NETNS_DIR / self.ns_name).exists()


class _NoMatchingEvent(LookupError):
    """``wait_for_event``'s "not yet"; shows the last events only when printed (it polls every ms)."""

    def __init__(self, events: list[RouterEvent]) -> None:
        super().__init__()
        self.events = events

    def __str__(self) -> str:
        return f"last events: {[str(e) for e in self.events[-10:]]}"


def _ns_name(ns: Namespace | str) -> str:
    return ns.name if isinstance(ns, Namespace) else str(ns)


def _run_ip(ns_name: str, *args: str) -> None:
    # netns.Namespace.ip needs a Namespace object; attach() also accepts a bare namespace name.
    proc = subprocess.run(
        [tools.tool("ip"), "-n", ns_name, *args], capture_output=True, text=True, timeout=10, check=False
    )
    if proc.returncode != 0:
        raise NamespaceError(f"ip -n {ns_name} {' '.join(args)} failed: {proc.stderr.strip()}")


class EmulatedVpc(Resource):
    """The data plane of one emulated VPC, as a ``Resource`` (see the module docstring).

    ``ec2`` is a boto3 EC2 client for the emulator (thread-safe; the sync thread uses it).
    ``workload_subnets``: subnet ids that get a workload namespace; default: every subnet whose
    route table has no route to an internet gateway (the private ones).
    """

    def __init__(
        self,
        ec2: Any,
        vpc_id: str,
        *,
        workload_subnets: Iterable[str] | None = None,
        workload_host: int = 10,
        poll_interval: float = 0.02,
        on_event: Callable[[RouterEvent], None] | None = None,
    ) -> None:
        self.ec2 = ec2
        self.vpc_id = vpc_id
        self.tag = f"vpc{next(_vpc_counter)}"
        self.workload_subnets = None if workload_subnets is None else set(workload_subnets)
        self.workload_host = workload_host
        self.poll_interval = poll_interval
        self.on_event = on_event
        self.router = Namespace(f"{self.tag}-rtr")
        self.internet = Internet(self.router, f"{self.tag}-inet")
        self.ports: dict[str, SubnetPort] = {}
        self.workloads: dict[str, Workload] = {}
        self.attachments: dict[str, Attachment] = {}  # by instance namespace name
        self.sync: RouteSync | None = None
        self.filter: VpcFilter | None = None
        self.vpc_cidr = ""
        self._lock = threading.Lock()
        self._opened = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Build the namespaces from the emulator's view and sync the routes once; then keep syncing.

        A failure half-way leaves the cleanup to ``close()`` (``with`` and ``open()`` call it).
        """
        if self._opened:
            return self
        self._opened = True
        started = time.monotonic()
        vpc = self.ec2.describe_vpcs(VpcIds=[self.vpc_id])["Vpcs"][0]
        self.vpc_cidr = vpc["CidrBlock"]
        subnets = sorted(
            self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [self.vpc_id]}])["Subnets"],
            key=lambda s: ipaddress.ip_network(s["CidrBlock"]),
        )
        tables = self.ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [self.vpc_id]}])["RouteTables"]
        self.router.open()
        set_sysctl(self.router, "net.ipv4.ip_forward", 1)
        self.internet.start()
        router_batch(self.router, ["nft", "-f", "-"], nft_ruleset(ROUTER_IFNAME))
        self.filter = VpcFilter(self.ec2, self.vpc_id, self.router)
        self.filter.install()
        self.ports.update(build_subnets(self.router, self.tag, self.vpc_cidr, subnets))
        for subnet in subnets:
            if wants_workload(subnet, tables, self.workload_subnets):
                add_workload(self.router, self.tag, self.ports[subnet["SubnetId"]], self.workload_host, self.workloads)
        self.sync = RouteSync(
            self.ec2,
            self.vpc_id,
            self.router,
            self.ports.values(),
            Target("via", via=INTERNET_LINK_IP, dev=ROUTER_IFNAME),
            self.attached_ips,
            interval=self.poll_interval,
            on_event=self.on_event,
            vpc_filter=self.filter,
        )
        self.sync.sync_once(full=True)
        self.sync.start()
        log.info(
            "emulated %s (%s): %d subnets, %d workloads, ready in %.0f ms",
            self.vpc_id,
            self.vpc_cidr,
            len(self.ports),
            len(self.workloads),
            (time.monotonic() - started) * 1000,
        )
        return self

    def close(self) -> None:
        """Stop syncing, kill every process, delete every namespace. Idempotent; never raises on
        a half-built VPC."""
        if self.sync is not None:
            self.sync.close()
        for workload in list(self.workloads.values()):
            workload.ns.close()
        with self._lock:
            self.attachments.clear()
        self.internet.close()
        self.router.close()  # instance-side veth ends vanish with their router ends

    # -- instances ---------------------------------------------------------------------------------

    def attach(
        self,
        ns: Namespace | str,
        ifname: str = "ens5",
        mac: str | None = None,
        ip_cidr: str = "",
        gateway: str | None = None,
        *,
        instance_id: str | None = None,
    ) -> Attachment:
        """Plug namespace ``ns`` into the bridge of the subnet that contains ``ip_cidr``.

        Creates veth ``ifname`` (with ``mac``) in ``ns`` with address ``ip_cidr`` and a default route
        via ``gateway`` (default: the subnet's ``.1``). ``instance_id`` names the instance for
        ``detach_instance``; when omitted it is looked up in the emulator by private IP.
        """
        name = _ns_name(ns)
        iface = ipaddress.ip_interface(ip_cidr)
        port = next((p for p in self.ports.values() if iface.ip in ipaddress.ip_network(p.cidr)), None)
        if port is None:
            raise ValueError(
                f"{ip_cidr} is in none of the subnets of {self.vpc_id}: {[p.cidr for p in self.ports.values()]}"
            )
        gateway = gateway or str(ipaddress.ip_network(port.cidr).network_address + 1)
        if instance_id is None:
            instance_id = self._instance_by_ip(str(iface.ip))
        router_if = f"nli{next(_port_counter)}"
        link = ["link", "add", router_if, "type", "veth", "peer", "name", ifname, "netns", name]
        self.router.ip(*(link + (["address", mac] if mac else [])))
        try:
            set_master(self.router, router_if, port.bridge)
            self.router.link_up(router_if)
            _run_ip(name, "addr", "add", str(iface), "dev", ifname)
            _run_ip(name, "link", "set", ifname, "up")
            _run_ip(name, "route", "replace", "default", "via", gateway, "dev", ifname)
            if mac:
                # A VPC knows each private IP's ENI without ARP. moto hands a terminated instance's
                # address to the next launch: the router must not keep the old MAC until its
                # neighbour entry fails (~8 s of lost packets that EC2 would not have).
                self.router.ip("neigh", "replace", str(iface.ip), "lladdr", mac, "dev", port.bridge, "nud", "reachable")
                self._teach_subnet(port.subnet_id, name, str(iface.ip), mac)
        except BaseException:
            self.router.ip("link", "del", router_if, check=False)
            raise
        attachment = Attachment(instance_id, name, ifname, mac, str(iface.ip), port.subnet_id, router_if)
        with self._lock:
            self.attachments[name] = attachment
        log.info("attached %s (%s, %s) to %s as %s", instance_id, name, iface, port.subnet_id, router_if)
        if self.sync is not None:
            self.sync.kick()
        return attachment

    def attach_instance(self, instance_id: str, ns: Namespace | str, *, ifname: str = "ens5") -> Attachment:
        """``attach`` with MAC, private IP and subnet read from the instance's primary ENI."""
        eni = self.ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
        )["NetworkInterfaces"]
        primary = next(e for e in eni if (e.get("Attachment") or {}).get("DeviceIndex") == 0)
        prefix = ipaddress.ip_network(self.ports[primary["SubnetId"]].cidr).prefixlen
        return self.attach(
            ns, ifname, primary["MacAddress"], f"{primary['PrivateIpAddress']}/{prefix}", instance_id=instance_id
        )

    def detach(self, ns: Namespace | str) -> None:
        """Unplug namespace ``ns`` (its veth goes); routes to its ENI black-hole. Idempotent."""
        with self._lock:
            attachment = self.attachments.pop(_ns_name(ns), None)
        if attachment is None:
            return
        self.router.ip("link", "del", attachment.router_ifname, check=False)
        log.info("detached %s (%s)", attachment.instance_id, attachment.ns_name)
        if self.sync is not None:
            self.sync.kick()

    def detach_instance(self, instance_id: str) -> None:
        """Unplug every namespace attached for ``instance_id``. Idempotent."""
        with self._lock:
            names = [a.ns_name for a in self.attachments.values() if a.instance_id == instance_id]
        for name in names:
            self.detach(name)

    def attached_ips(self) -> set[str]:
        """Private IPs of instances plugged into the data plane whose namespace still exists."""
        with self._lock:
            return {a.ip for a in self.attachments.values() if a.alive}

    def _teach_subnet(self, subnet_id: str, name: str, ip: str, mac: str) -> None:
        """Tells the subnet's other instances the address's MAC, as the router is told: one that had
        talked to the address's last owner kept the old MAC and reached nothing until its entry
        failed (a standby's probes through a replaced NAT at the same address: 13 misses)."""
        with self._lock:
            others = [a for a in self.attachments.values() if a.subnet_id == subnet_id and a.ns_name != name]
        for other in others:
            with contextlib.suppress(NamespaceError):  # an instance going away meanwhile
                _run_ip(other.ns_name, "neigh", "replace", ip, "lladdr", mac, "dev", other.ifname, "nud", "reachable")

    def _instance_by_ip(self, ip: str) -> str | None:
        enis = self.ec2.describe_network_interfaces(
            Filters=[
                {"Name": "vpc-id", "Values": [self.vpc_id]},
                {"Name": "addresses.private-ip-address", "Values": [ip]},
            ]
        )["NetworkInterfaces"]
        return next(((e.get("Attachment") or {}).get("InstanceId") for e in enis), None)

    # -- probes and observation --------------------------------------------------------------------

    def workload(self, subnet_id: str | None = None) -> Workload:
        """The workload of ``subnet_id`` (default: the only / first private subnet's)."""
        if subnet_id is not None:
            return self.workloads[subnet_id]
        if not self.workloads:
            raise LookupError(f"{self.vpc_id} has no workload subnet")
        return next(iter(self.workloads.values()))

    def whoami(self, subnet_id: str | None = None, timeout: float = 2.0) -> str:
        """HTTP from the workload: the address the internet server saw (the NAT's public IP)."""
        return probes.http_whoami(self.workload(subnet_id).netns, timeout=timeout)

    def udp_stream(self, subnet_id: str | None = None, **kwargs: Any) -> probes.UdpStream:
        """A ``probes.UdpStream`` from the workload (use as a context manager)."""
        return probes.UdpStream(self.workload(subnet_id).netns, **kwargs)

    def tcp_hold(self, subnet_id: str | None = None, **kwargs: Any) -> probes.TcpHold:
        """A ``probes.TcpHold`` from the workload (use as a context manager)."""
        return probes.TcpHold(self.workload(subnet_id).netns, **kwargs)

    def many_flows(self, subnet_id: str | None = None, **kwargs: Any) -> flows.ManyFlows:
        """A ``flows.ManyFlows`` (hundreds of TCP connections) from the workload (use as a context manager)."""
        return flows.ManyFlows(self.workload(subnet_id).netns, **kwargs)

    @property
    def events(self) -> list[RouterEvent]:
        """Every kernel change the router made, in order."""
        return list(self.sync.events) if self.sync is not None else []

    def timeline(self) -> list[str]:
        """The events as timeline lines (``HH:MM:SS.mmmZ router: route rtb-… 0.0.0.0/0 → …``)."""
        return [str(e) for e in self.events]

    def wait_for_event(self, pattern: str, *, after: float = 0.0, timeout: float = 5.0) -> RouterEvent:
        """The first event with ``mono > after`` whose text matches regex ``pattern``."""
        regex = re.compile(pattern)

        def matching() -> RouterEvent:
            events = self.events
            found = next((e for e in events if e.mono > after and regex.search(e.text)), None)
            if found is None:
                raise _NoMatchingEvent(events)
            return found

        return wait_until(matching, what=f"router event matching {pattern!r}", timeout=timeout, interval=0.001)

    def kernel_state(self) -> str:
        """The router's rules, routes and nftables, for failure reports."""
        parts = []
        for argv in (["ip", "rule"], ["ip", "route", "show", "table", "all"], ["nft", "list", "ruleset"]):
            with contextlib.suppress(Exception):
                out = self.router.run(argv, timeout=10, check=False)
                parts.append(f"$ {' '.join(argv)}\n{out.stdout.decode()}{out.stderr.decode()}")
        return "\n".join(parts)


__all__ = ["Attachment", "EmulatedVpc"]
