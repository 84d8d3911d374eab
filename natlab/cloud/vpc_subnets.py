"""An emulated VPC's subnets in its router namespace, and the workload namespaces of the private ones.

- per subnet, the router gets one bridge (fixed MAC, gateway ``.1`` of the subnet) and an
  ``ip rule iif <bridge> lookup <table>`` whose table holds the VPC's on-link subnet routes plus the
  subnet's route table (the latter kept in sync by ``RouteSync``, see ``route_sync.py``);
- a workload namespace per private subnet (``.10``, default via ``.1``), from which ``probes.py``
  sends traffic.

Why ``iif <bridge>`` and not ``from <subnet cidr> iif <bridge>``: an AWS route table applies to all
traffic leaving the subnet, including what a NAT instance forwards with a foreign source address (a
NAT that forgot to masquerade must hit the IGW and be dropped there, not bypass the route table).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netns import Namespace
from .netns_command import NamespaceError
from .netns_links import bridge, set_master, veth_pair
from .route_model import SubnetPort, table_for_subnet

TABLE_BASE = 100
RULE_PRIORITY_BASE = 1000
WORKLOAD_IFNAME = "eth0"


@dataclass(frozen=True)
class Workload:
    """A private workload: a namespace at ``ip`` in ``subnet_id``, default route via the router."""

    subnet_id: str
    ns: Namespace
    ip: str

    @property
    def netns(self) -> Path:
        return self.ns.path


def router_batch(router: Namespace, argv: list[str], script: str) -> None:
    """Runs ``argv`` (``ip -batch -``, ``nft -f -``) in the router namespace with ``script`` on its stdin."""
    proc = router.run(argv, input=script.encode(), timeout=10, check=False)
    if proc.returncode != 0:
        raise NamespaceError(f"{' '.join(argv)} in {router.name} failed: {proc.stderr.decode().strip()}\n{script}")


def wants_workload(subnet: dict[str, Any], tables: list[dict[str, Any]], workload_subnets: set[str] | None) -> bool:
    """Whether ``subnet`` gets a workload: one of ``workload_subnets`` when given, else a private subnet
    (its route table has no route to an internet gateway)."""
    if workload_subnets is not None:
        return subnet["SubnetId"] in workload_subnets
    table = table_for_subnet(tables, subnet["SubnetId"]) or {}
    return not any(r.get("GatewayId", "").startswith("igw-") for r in table.get("Routes") or [])


def build_subnets(router: Namespace, tag: str, vpc_cidr: str, subnets: list[dict[str, Any]]) -> dict[str, SubnetPort]:
    """The bridge, gateway, table and rules of each of ``subnets`` in the router; their ports by subnet id."""
    vpc_index = int(tag[3:]) % 256
    ports: dict[str, SubnetPort] = {}
    for index, subnet in enumerate(subnets):
        cidr = ipaddress.ip_network(subnet["CidrBlock"])
        port = SubnetPort(subnet["SubnetId"], str(cidr), f"nlbr{index}", TABLE_BASE + index)
        bridge(router, port.bridge, f"02:4e:4c:{vpc_index:02x}:{index:02x}:01")
        router.add_address(port.bridge, f"{cidr.network_address + 1}/{cidr.prefixlen}")
        ports[port.subnet_id] = port
    lines = []
    for port in ports.values():
        for other in ports.values():  # the VPC's local route, subnet by subnet
            lines.append(f"route replace {other.cidr} dev {other.bridge} table {port.table}")
        lines.append(f"route replace blackhole {vpc_cidr} table {port.table}")
        priority = RULE_PRIORITY_BASE + 2 * (port.table - TABLE_BASE)
        lines.append(f"rule add iif {port.bridge} priority {priority} lookup {port.table}")
        # Nothing in the subnet's route table matched: AWS drops it (no ICMP).
        lines.append(f"rule add iif {port.bridge} priority {priority + 1} blackhole")
    router_batch(router, ["ip", "-batch", "-"], "\n".join(lines) + "\n")
    return ports


def add_workload(
    router: Namespace, tag: str, port: SubnetPort, workload_host: int, workloads: dict[str, Workload]
) -> Workload:
    """The workload of ``port``'s subnet at host ``workload_host``, plugged into its bridge.

    It enters ``workloads`` before its namespace opens: a failure half-way leaves it to the VPC's ``close()``.
    """
    index = port.table - TABLE_BASE
    cidr = ipaddress.ip_network(port.cidr)
    ip = str(cidr.network_address + workload_host)
    ns = Namespace(f"{tag}-wl{index}")
    workloads[port.subnet_id] = workload = Workload(port.subnet_id, ns, ip)
    ns.open()
    veth_pair(router, f"nlwl{index}", ns, WORKLOAD_IFNAME)
    set_master(router, f"nlwl{index}", port.bridge)
    ns.add_address(WORKLOAD_IFNAME, f"{ip}/{cidr.prefixlen}")
    ns.ip("route", "add", "default", "via", str(cidr.network_address + 1))
    return workload


__all__ = ["Workload", "add_workload", "build_subnets", "router_batch", "wants_workload"]
