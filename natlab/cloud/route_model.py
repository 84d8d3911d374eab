"""The VPC router's wanted kernel state, from the emulator's EC2 state: each subnet's routes and the IGW's NAT.

``fetch_route_tables`` and ``fetch_resources`` read a ``CloudView``; the pure function ``desired_state``
turns it into kernel routes and the IGW's 1:1 NAT, which ``RouteSync`` (``route_sync.py``) applies.

How an AWS route target becomes a kernel route in the subnet's table:

- ``local`` / VPC CIDR: the subnets' on-link routes (installed once by the router, not here);
- ``igw-*``: via the internet link; the IGW's 1:1 NAT (private <-> public IP of every ENI that has a
  public IP or Elastic IP) lives in nftables maps (``igw_nftables.py``); traffic from an address
  without a public IP is dropped on the way out, as AWS does;
- ``eni-*`` (or an instance id): via that ENI's private IP on its subnet's bridge, but ``blackhole``
  when the ENI's instance is not running or not plugged into the data plane (a dead ENI: AWS shows
  the route as ``blackhole``), and ``blackhole`` too while the ENI's source/dest check is still on
  (AWS delivers only traffic addressed to the instance itself to such an ENI);
- anything else (NAT gateway, peering, transit gateway...): ``blackhole``, not emulated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class SubnetPort:
    """A subnet as the router sees it: its bridge and its policy-routing table."""

    subnet_id: str
    cidr: str
    bridge: str
    table: int


@dataclass(frozen=True)
class Target:
    """What a kernel route in a subnet's table does: forward ``via`` a next hop, or drop."""

    kind: Literal["via", "blackhole"]
    via: str | None = None
    dev: str | None = None
    note: str = ""
    from_cloud_state: bool = False
    """A blackhole decided on ENI/instance data (stale by up to ``resource_interval``)."""

    def command(self, dst: str, table: int) -> str:
        """The ``ip route`` batch line that installs this target for ``dst`` in ``table``."""
        if self.kind == "blackhole":
            return f"route replace blackhole {dst} table {table}"
        return f"route replace {dst} via {self.via} dev {self.dev} table {table} onlink"


@dataclass
class CloudView:
    """The slice of the emulator's EC2 state the data plane follows."""

    route_tables: list[dict[str, Any]]
    enis: dict[str, dict[str, Any]]
    instance_states: dict[str, str]
    addresses: list[dict[str, Any]] = field(default_factory=list)
    resources_at: float = 0.0
    """``time.monotonic()`` when ``enis`` and ``instance_states`` were read."""


def fetch_route_tables(ec2: Any, vpc_id: str) -> list[dict[str, Any]]:
    """The VPC's route tables (one call, ~5 ms warm against moto)."""
    return ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]


def fetch_resources(ec2: Any, vpc_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
    """The VPC's ENIs by id, its instances' states by id, and the account's Elastic IPs
    (three calls, ~25 ms warm)."""
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    enis = ec2.describe_network_interfaces(Filters=vpc_filter)["NetworkInterfaces"]
    reservations = ec2.describe_instances(Filters=vpc_filter)["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    addresses = ec2.describe_addresses()["Addresses"]
    return {e["NetworkInterfaceId"]: e for e in enis}, states, addresses


def public_ips(eni: Mapping[str, Any]) -> dict[str, str]:
    """``{private IP: public IP}`` for every address of ``eni`` that has a public IP or EIP."""
    mapping = {}
    for addr in eni.get("PrivateIpAddresses") or []:
        public = (addr.get("Association") or {}).get("PublicIp")
        if public:
            mapping[addr["PrivateIpAddress"]] = public
    top = (eni.get("Association") or {}).get("PublicIp")
    if top and eni.get("PrivateIpAddress"):
        mapping.setdefault(eni["PrivateIpAddress"], top)
    return mapping


def table_for_subnet(route_tables: Iterable[Mapping[str, Any]], subnet_id: str) -> Mapping[str, Any] | None:
    """The route table associated with ``subnet_id``, else the VPC's main route table."""
    main = None
    for table in route_tables:
        for assoc in table.get("Associations") or []:
            if assoc.get("SubnetId") == subnet_id:
                return table
            if assoc.get("Main"):
                main = table
    return main


def _eni_target(eni_id: str, view: CloudView, bridges: Mapping[str, str], attached_ips: set[str]) -> Target:
    eni = view.enis.get(eni_id)
    if eni is None:
        return Target("blackhole", note=f"{eni_id} (no such ENI)", from_cloud_state=True)
    ip = eni.get("PrivateIpAddress", "?")
    instance_id = (eni.get("Attachment") or {}).get("InstanceId")
    state = view.instance_states.get(instance_id or "", "detached" if not instance_id else "gone")
    if state != "running":
        return Target("blackhole", note=f"{eni_id} ({ip}) dead: instance {instance_id} {state}", from_cloud_state=True)
    if ip not in attached_ips:
        return Target("blackhole", note=f"{eni_id} ({ip}) dead: instance {instance_id} not on the data plane")
    if eni.get("SourceDestCheck", True):
        return Target("blackhole", note=f"{eni_id} ({ip}) drop: source/dest check is on", from_cloud_state=True)
    dev = bridges.get(eni.get("SubnetId", ""))
    if dev is None:
        return Target("blackhole", note=f"{eni_id} ({ip}) in a subnet the router does not serve")
    return Target("via", via=ip, dev=dev, note=f"{eni_id} ({ip})")


def route_target(
    route: Mapping[str, Any], view: CloudView, bridges: Mapping[str, str], attached_ips: set[str], igw: Target
) -> Target | None:
    """The kernel target for one emulator route; None for the ``local`` route."""
    gateway = route.get("GatewayId", "")
    if gateway == "local":
        return None
    if gateway.startswith("igw-"):
        return Target(igw.kind, igw.via, igw.dev, note=gateway)
    eni_id = route.get("NetworkInterfaceId")
    if not eni_id and route.get("InstanceId"):
        eni_id = next(
            (
                e["NetworkInterfaceId"]
                for e in view.enis.values()
                if (e.get("Attachment") or {}).get("InstanceId") == route["InstanceId"]
                and (e.get("Attachment") or {}).get("DeviceIndex") == 0
            ),
            None,
        )
    if eni_id:
        return _eni_target(eni_id, view, bridges, attached_ips)
    others = {k: v for k, v in route.items() if k.endswith("Id") and v}
    return Target("blackhole", note=f"unsupported target {others or route}")


def desired_state(
    view: CloudView, ports: Iterable[SubnetPort], attached_ips: set[str], igw: Target
) -> tuple[dict[tuple[int, str], tuple[str, Target]], dict[str, str]]:
    """Wanted kernel state: ``{(table, dst): (route table id, target)}`` and ``{private: public}``."""
    ports = list(ports)
    bridges = {p.subnet_id: p.bridge for p in ports}
    routes: dict[tuple[int, str], tuple[str, Target]] = {}
    for port in ports:
        table = table_for_subnet(view.route_tables, port.subnet_id)
        if table is None:
            continue
        for route in table.get("Routes") or []:
            dst = route.get("DestinationCidrBlock")
            if not dst:
                continue  # IPv6 and prefix-list routes are not emulated
            target = route_target(route, view, bridges, attached_ips, igw)
            if target is not None:
                routes[(port.table, str(ipaddress.ip_network(dst)))] = (table["RouteTableId"], target)
    return routes, igw_nat(view)


def igw_nat(view: CloudView) -> dict[str, str]:
    """The IGW's 1:1 NAT, ``{private IP: public IP}``, for the ENIs of the VPC.

    Elastic IPs come from ``describe_addresses`` (authoritative: after a reassociation moto still
    shows the EIP on the old ENI too); an EIP replaces the ENI's auto-assigned public IP.
    """
    vpc_ips = {addr["PrivateIpAddress"] for eni in view.enis.values() for addr in eni.get("PrivateIpAddresses") or []}
    eips = {a["PublicIp"]: a.get("PrivateIpAddress") for a in view.addresses}
    nat: dict[str, str] = {}
    for eni in view.enis.values():
        for private, public in public_ips(eni).items():
            if public not in eips:
                nat[private] = public
    for public, private in sorted(eips.items()):
        if private and private in vpc_ips:
            nat[private] = public
    return nat
