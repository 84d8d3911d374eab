"""A partition between two zones' NATs: the emulated VPC router drops their VXLAN packets only.

The takeover watchers probe each other through VXLAN links (UDP 4789, ``userdata/nat-boot.sh``).
Cutting only that port between the two zones' public subnets leaves every client flow, the API and
the other zone's tunnels alone: both NATs stay healthy and forward, yet each sees the other's probes
fail, as a broken path between two hosts would look on AWS (the lab models the cut, not its cause).
The cut is by subnet, not by address, so a replacement NAT in either zone is cut off too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from natlab.lab.lab import Lab

PARTITION_TABLE = "natlab_partition"
VXLAN_PORT = 4789


def public_subnet_cidr(lab: Lab, zone: str) -> str:
    """The CIDR of the subnet the zone's current NAT sits in."""
    instance = lab.ec2.describe_instances(InstanceIds=[lab.current_nat(zone)])["Reservations"][0]["Instances"][0]
    return lab.ec2.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]["CidrBlock"]


def partition_ruleset(first: str, second: str) -> str:
    """nftables text: drop VXLAN between the two CIDRs, both ways (ahead of the VPC filter)."""
    return (
        f"table inet {PARTITION_TABLE} {{\n"
        " chain forward {\n"
        "  type filter hook forward priority -5; policy accept;\n"
        f"  ip saddr {first} ip daddr {second} udp dport {VXLAN_PORT} counter drop\n"
        f"  ip saddr {second} ip daddr {first} udp dport {VXLAN_PORT} counter drop\n"
        " }\n"
        "}\n"
    )


def dropped_packets(lab: Lab) -> int:
    """VXLAN packets the partition has dropped so far."""
    assert lab.vpc is not None
    listing = lab.vpc.router.run(["nft", "list", "table", "inet", PARTITION_TABLE], timeout=10).stdout.decode()
    return sum(int(word) for line in listing.splitlines() if "drop" in line for word in _packets(line))


def _packets(line: str) -> list[str]:
    words = line.split()
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "packets"]


@contextlib.contextmanager
def vxlan_partition(lab: Lab, first_zone: str, second_zone: str) -> Iterator[None]:
    """Inside the block the two zones' NATs cannot reach each other over VXLAN; healed on exit."""
    if lab.vpc is None:
        raise RuntimeError("a partition needs the lab's data plane (the emulated VPC router)")
    router = lab.vpc.router
    ruleset = partition_ruleset(public_subnet_cidr(lab, first_zone), public_subnet_cidr(lab, second_zone))
    router.run(["nft", "-f", "-"], input=ruleset.encode(), timeout=10)
    try:
        yield
    finally:
        router.run(["nft", "delete", "table", "inet", PARTITION_TABLE], timeout=10, check=False)
