"""The launch template's interface groups reach the instances an Auto Scaling group launches (moto fix).

Like ``test_moto_fixes.py``: the fixed behaviour, then plain moto 5.2.5 still without it.
"""

from __future__ import annotations

from natlab.cloud import moto_fixes
from natlab.cloud.backend import MotoBackend


def _launch(aws: MotoBackend, name: str) -> tuple[str, list[str]]:
    """A template like the module's (groups on the device-0 interface), an ASG of one from it;
    returns the template's group and the groups of the launched instance's primary ENI."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    group = ec2.create_security_group(GroupName=name, Description="NAT", VpcId=vpc)["GroupId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={
            "ImageId": "ami-03c3da4cfa8e8943a",
            "NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": True, "Groups": [group]}],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=1,
        MaxSize=1,
        VPCZoneIdentifier=subnet["SubnetId"],
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
    )
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])
    (eni,) = enis["NetworkInterfaces"]
    return group, [g["GroupId"] for g in eni["Groups"]]


def test_instance_launched_from_the_template_carries_its_interface_groups(aws: MotoBackend) -> None:
    group, carried = _launch(aws, "nat-groups")
    assert carried == [group], "the primary ENI carries the template's interface group, as on AWS"


def test_plain_moto_still_gives_the_instance_the_default_group(aws: MotoBackend) -> None:
    with moto_fixes.without("launch_template_interface_groups"):
        group, carried = _launch(aws, "nat-default")
    assert group not in carried, "moto now honours the template's interface groups: drop the fix"
