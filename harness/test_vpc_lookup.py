"""The lab finds its VPC by name and by the subnet holding its instances, so a duplicate can't fool it."""

from __future__ import annotations

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.lab.vpc_lookup import lab_vpc_id


def named_vpc(ec2, name: str, subnet_cidr: str | None) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": name}])
    if subnet_cidr:
        ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr, AvailabilityZone="us-east-1a")
    return vpc


def test_an_empty_duplicate_of_the_labs_vpc_is_ignored(aws: MotoBackend) -> None:
    ec2 = aws.client("ec2")
    duplicate = named_vpc(ec2, "lookup-dup", None)  # what a retried CreateVpc leaves behind
    real = named_vpc(ec2, "lookup-dup", "10.0.1.0/24")

    assert lab_vpc_id(ec2, "lookup-dup", "10.0.1.10") == real != duplicate


def test_no_vpc_holding_the_instance_names_what_was_found(aws: MotoBackend) -> None:
    ec2 = aws.client("ec2")
    vpc = named_vpc(ec2, "lookup-none", "10.0.2.0/24")

    with pytest.raises(RuntimeError, match=f"lookup-none with a subnet holding 10.0.9.9, found \\['{vpc}'\\]"):
        lab_vpc_id(ec2, "lookup-none", "10.0.9.9")
