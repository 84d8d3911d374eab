"""The boot script's reboot check (`routes_point_here`) against the emulator: a serving NAT that
restarts finds its routes already in place and makes no change; anything else serves again."""

from __future__ import annotations

import subprocess

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.cloud.clients import EMULATOR_CREDENTIALS
from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env


@pytest.fixture
def two_tables(aws: MotoBackend) -> dict[str, str]:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    ids = {
        name: ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"] for name in "ab"
    }
    for n in (1, 2):
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=ids["a"])
        ids[f"rtb{n}"] = table
    return ids


def routes_point_here(aws: MotoBackend, tables: str, eni: str) -> int:
    script = f'source "{BOOT_SCRIPT_PATH}"; aws_region={aws.region}; eni_id={eni}; routes_point_here'
    credentials = EMULATOR_CREDENTIALS
    env = functions_only_env(
        aws.endpoint_url,
        credentials["aws_access_key_id"],
        credentials["aws_secret_access_key"],
        NAT_ROUTE_TABLE_IDS=tables,
    )
    run = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "error" not in run.stdout.lower() + run.stderr.lower(), run.stdout + run.stderr
    return run.returncode


def test_every_table_on_this_eni_means_the_routes_are_already_here(aws: MotoBackend, two_tables: dict) -> None:
    tables = f"{two_tables['rtb1']} {two_tables['rtb2']}"
    assert routes_point_here(aws, tables, two_tables["a"]) == 0
    assert routes_point_here(aws, tables, two_tables["b"]) != 0


def test_one_table_elsewhere_or_without_the_route_means_serve_again(aws: MotoBackend, two_tables: dict) -> None:
    ec2 = aws.client("ec2")
    tables = f"{two_tables['rtb1']} {two_tables['rtb2']}"
    ec2.replace_route(
        RouteTableId=two_tables["rtb2"], DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=two_tables["b"]
    )
    assert routes_point_here(aws, tables, two_tables["a"]) != 0
    ec2.delete_route(RouteTableId=two_tables["rtb2"], DestinationCidrBlock="0.0.0.0/0")
    assert routes_point_here(aws, tables, two_tables["a"]) != 0
    assert routes_point_here(aws, two_tables["rtb1"], two_tables["a"]) == 0
