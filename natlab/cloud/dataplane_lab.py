"""Test fixtures for the data plane: a moto VPC with two fake NAT instances.

The NATs carry a security group like the module's (ingress from the VPC CIDR, egress anywhere):
the emulated VPC enforces security groups, and moto's default group lets nothing in.

Used by ``harness/test_dataplane_*.py`` and ``bench/nat_throughput.py``, against a
:class:`natlab.cloud.backend.MotoBackend`: ``build_cloud(backend.client("ec2"))``.

The fake NAT namespaces are configured the way the boot script configures a real one (forwarding,
nftables masquerade of the private CIDR on ``ens5``, source/dest check off), each step optional so
that a test can leave one out and see the traffic fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .dataplane import EmulatedVpc
from .netns import Namespace
from .netns_sysctl import set_sysctl

VPC_CIDR = "10.0.0.0/16"
PUBLIC_CIDR = "10.0.0.0/24"
PRIVATE_CIDR = "10.0.1.0/24"
DEFAULT_ROUTE = "0.0.0.0/0"


@dataclass
class CloudLab:
    """One VPC: a public subnet (route to the IGW), a private one, two NAT instances in the public one."""

    ec2: Any
    vpc_id: str
    public_subnet: str
    private_subnet: str
    private_rtb: str
    nat_a: str
    nat_b: str
    eni: dict[str, str]
    public_ip: dict[str, str]
    """Instance id -> the public IP the internet should see (A: an Elastic IP, B: an auto public IP)."""
    nat_sg: str
    """The NATs' security group: like the module's, ingress from the VPC CIDR only, egress anywhere."""

    def route_private_to(self, instance_id: str, *, create: bool = False) -> None:
        call = self.ec2.create_route if create else self.ec2.replace_route
        call(
            RouteTableId=self.private_rtb, DestinationCidrBlock=DEFAULT_ROUTE, NetworkInterfaceId=self.eni[instance_id]
        )


def build_cloud(ec2: Any) -> CloudLab:
    vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock=PUBLIC_CIDR)["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock=PRIVATE_CIDR)["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public_rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rtb, DestinationCidrBlock=DEFAULT_ROUTE, GatewayId=igw)
    ec2.associate_route_table(RouteTableId=public_rtb, SubnetId=public)
    private_rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=private_rtb, SubnetId=private)
    nat_sg = ec2.create_security_group(GroupName="nat", Description="like the module's", VpcId=vpc)["GroupId"]
    # The module's ingress rule: anything from the served CIDR blocks (by default the VPC's).
    ec2.authorize_security_group_ingress(
        GroupId=nat_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": VPC_CIDR}]}]
    )
    instances = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=2,
        MaxCount=2,
        SubnetId=public,
        InstanceType="t3.micro",
        SecurityGroupIds=[nat_sg],
    )["Instances"]
    nat_a, nat_b = (i["InstanceId"] for i in instances)
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=nat_a)
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"]
    eni = {e["Attachment"]["InstanceId"]: e["NetworkInterfaceId"] for e in enis}
    auto_ip = {e["Attachment"]["InstanceId"]: e["Association"]["PublicIp"] for e in enis}
    return CloudLab(
        ec2,
        vpc,
        public,
        private,
        private_rtb,
        nat_a,
        nat_b,
        eni,
        {nat_a: eip["PublicIp"], nat_b: auto_ip[nat_b]},
        nat_sg,
    )


def add_private_subnet(lab: CloudLab, cidr: str, *, route_to: str | None = None) -> str:
    """One more private subnet (before the ``EmulatedVpc`` is built: it reads the subnets once),
    its default route to ``route_to``'s ENI when given; returns the subnet id."""
    subnet = lab.ec2.create_subnet(VpcId=lab.vpc_id, CidrBlock=cidr)["Subnet"]["SubnetId"]
    rtb = lab.ec2.create_route_table(VpcId=lab.vpc_id)["RouteTable"]["RouteTableId"]
    lab.ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
    if route_to is not None:
        lab.ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=DEFAULT_ROUTE, NetworkInterfaceId=lab.eni[route_to])
    return subnet


def serve_only(lab: CloudLab, cidrs: list[str]) -> None:
    """Make the NATs' group what the module makes for ``served_cidrs = cidrs``: ingress from those only."""
    group = lab.ec2.describe_security_groups(GroupIds=[lab.nat_sg])["SecurityGroups"][0]
    lab.ec2.revoke_security_group_ingress(GroupId=lab.nat_sg, IpPermissions=group["IpPermissions"])
    lab.ec2.authorize_security_group_ingress(
        GroupId=lab.nat_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": c} for c in cidrs]}]
    )


@contextlib.contextmanager
def nat_instance(
    vpc: EmulatedVpc,
    lab: CloudLab,
    instance_id: str,
    *,
    forwarding: bool = True,
    masquerade: bool = True,
    disable_source_dest_check: bool = True,
) -> Iterator[Namespace]:
    """A namespace standing in for a booted NAT instance, plugged into the public subnet."""
    with Namespace(f"nat-{instance_id[-6:]}") as ns:
        vpc.attach_instance(instance_id, ns)
        try:
            if forwarding:
                set_sysctl(ns, "net.ipv4.ip_forward", 1)
            if masquerade:
                ns.run(
                    ["nft", "-f", "-"],
                    input=(
                        "table ip nat {\n chain postrouting {\n"
                        "  type nat hook postrouting priority srcnat; policy accept;\n"
                        f'  oifname "ens5" ip saddr {VPC_CIDR} masquerade\n }}\n}}\n'
                    ).encode(),
                )
            if disable_source_dest_check:
                lab.ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=lab.eni[instance_id], SourceDestCheck={"Value": False}
                )
            yield ns
        finally:
            vpc.detach(ns)
