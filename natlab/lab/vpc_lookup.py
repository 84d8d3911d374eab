"""Which emulated VPC is a lab's: the one named after it that holds its instances."""

from __future__ import annotations

import logging
from ipaddress import ip_address, ip_network
from typing import Any

log = logging.getLogger(__name__)


def lab_vpc_id(ec2: Any, name: str, booting_ip: str) -> str:
    """The VPC named ``name`` whose subnets hold ``booting_ip`` (the first instance to boot).

    The name alone is not enough: on a loaded machine the provider may retry a ``CreateVpc`` the
    emulator had already done, leaving a second, empty VPC of the same name (seen once in CI).
    """
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
    ids = [vpc["VpcId"] for vpc in vpcs]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": ids}])["Subnets"] if ids else []
    holding = sorted({s["VpcId"] for s in subnets if ip_address(booting_ip) in ip_network(s["CidrBlock"])})
    if len(holding) != 1:
        raise RuntimeError(f"expected one VPC named {name} with a subnet holding {booting_ip}, found {holding or ids}")
    if len(ids) > 1:
        log.warning("the emulator holds %d VPCs named %s; the lab's is %s", len(ids), name, holding[0])
    return holding[0]
