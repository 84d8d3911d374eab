"""Each moto fix gives AWS behaviour, and moto 5.2.5 itself still lacks it (else drop the fix).

The fixes are process-wide; a ``test_plain_moto_...`` test takes one away for its block only
(``moto_fixes.without``) to show the upstream bug.
"""

from __future__ import annotations

import base64

import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from natlab.cloud import moto_fixes, warm_pool
from natlab.cloud.backend import MotoBackend
from natlab.cloud.warm_pool import WarmPoolKeeper

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
MOTO_SERVER_ERROR = (ClientError, ResponseParserError)  # moto's HTTP 500 is an HTML page


def make_group(
    aws: MotoBackend,
    name: str = "nat-a",
    hook: bool = False,
    tags: dict[str, str] | None = None,
    encrypted_root: bool = False,
    grace_period: int | None = None,
) -> dict[str, str]:
    """A VPC, a subnet, a launch template and an ASG of one instance; returns their ids."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone="us-east-1a")
    subnet_id = subnet["Subnet"]["SubnetId"]
    data = {
        "ImageId": "ami-03c3da4cfa8e8943a",
        "InstanceType": "t4g.nano",
        "UserData": base64.b64encode(b"#!/bin/bash\necho v1\n").decode(),
    }
    if encrypted_root:  # like the module: no VolumeSize, the image's size applies
        data["BlockDeviceMappings"] = [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeType": "gp3", "Encrypted": True}}]
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    extra: dict = {} if grace_period is None else {"HealthCheckGracePeriod": grace_period}
    if hook:
        extra["LifecycleHookSpecificationList"] = [
            {
                "LifecycleHookName": "launch",
                "LifecycleTransition": LAUNCHING,
                "HeartbeatTimeout": 300,
                "DefaultResult": "ABANDON",
            }
        ]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet_id,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in (tags or {}).items()],
        **extra,
    )
    return {"vpc": vpc, "subnet": subnet_id, "template": template_id, "group": name}


def group_instances(aws: MotoBackend, name: str) -> list[dict[str, str]]:
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return groups["AutoScalingGroups"][0]["Instances"]


def only_instance(aws: MotoBackend, name: str) -> str:
    (instance,) = group_instances(aws, name)
    return instance["InstanceId"]


# --- a) launch template versions -----------------------------------------------------------------


def _replace_after_new_template_version(aws: MotoBackend) -> str:
    ids = make_group(aws)
    ec2 = aws.client("ec2")
    ec2.create_launch_template_version(
        LaunchTemplateId=ids["template"],
        SourceVersion="1",
        LaunchTemplateData={"UserData": base64.b64encode(b"#!/bin/bash\necho v2\n").decode()},
    )
    old = only_instance(aws, "nat-a")
    ec2.terminate_instances(InstanceIds=[old])
    return only_instance(aws, "nat-a")


def test_asg_launches_from_a_new_launch_template_version(aws: MotoBackend) -> None:
    new = _replace_after_new_template_version(aws)
    user_data = aws.client("ec2").describe_instance_attribute(InstanceId=new, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(user_data) == b"#!/bin/bash\necho v2\n"


def test_plain_moto_still_fails_to_launch_from_a_new_template_version(aws: MotoBackend) -> None:
    with moto_fixes.without("launch_template_version_user_data"), pytest.raises(MOTO_SERVER_ERROR):
        _replace_after_new_template_version(aws)


def _template_data_tag_types(aws: MotoBackend) -> list[str]:
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="tagged",
        LaunchTemplateData={
            "ImageId": "ami-03c3da4cfa8e8943a",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "1"}]}],
        },
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "b", "Value": "2"}]}],
    )["LaunchTemplate"]
    assert template["Tags"] == [{"Key": "b", "Value": "2"}]
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ]
    return [t["ResourceType"] for t in version["LaunchTemplateData"]["TagSpecifications"]]


def test_launch_template_own_tags_stay_out_of_its_launch_data(aws: MotoBackend) -> None:
    assert _template_data_tag_types(aws) == ["instance"]


def test_plain_moto_still_copies_template_tags_into_launch_data(aws: MotoBackend) -> None:
    with moto_fixes.without("launch_template_own_tags"):
        assert _template_data_tag_types(aws) == ["instance", "launch-template"]


# --- b) blackhole routes, primary ENI deleted on termination ------------------------------------


def _route_to_terminated_nat(aws: MotoBackend) -> dict[str, object]:
    ids = make_group(aws)
    ec2 = aws.client("ec2")
    instance = only_instance(aws, "nat-a")
    reservation = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]
    eni = reservation["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    table = ec2.create_route_table(VpcId=ids["vpc"])["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=eni)
    ec2.terminate_instances(InstanceIds=[instance])
    routes = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    (default,) = [r for r in routes if r["DestinationCidrBlock"] == "0.0.0.0/0"]
    (address,) = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"]
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni]}])[
        "NetworkInterfaces"
    ]
    return {"route": default, "address": address, "enis": enis, "eni": eni}


def test_route_to_a_terminated_nat_is_blackhole_and_its_eni_and_eip_are_released(
    aws: MotoBackend,
) -> None:
    seen = _route_to_terminated_nat(aws)
    assert seen["route"]["State"] == "blackhole"
    assert seen["route"]["NetworkInterfaceId"] == seen["eni"]
    assert seen["enis"] == [], "primary ENI (DeleteOnTermination=true) should be deleted"
    assert "AssociationId" not in seen["address"]


def test_route_to_a_stopped_nat_is_blackhole_until_started(aws: MotoBackend) -> None:
    ids = make_group(aws)
    ec2 = aws.client("ec2")
    instance = only_instance(aws, "nat-a")
    reservation = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]
    eni = reservation["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    table = ec2.create_route_table(VpcId=ids["vpc"])["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni)

    def state() -> str:
        routes = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
        return next(r["State"] for r in routes if r["DestinationCidrBlock"] == "0.0.0.0/0")

    assert state() == "active"
    ec2.stop_instances(InstanceIds=[instance])
    assert state() == "blackhole"
    ec2.start_instances(InstanceIds=[instance])
    assert state() == "active"


def test_plain_moto_still_keeps_routes_to_terminated_nat_active(aws: MotoBackend) -> None:
    with moto_fixes.without("route_blackhole_and_primary_eni"):
        seen = _route_to_terminated_nat(aws)
    assert seen["route"]["State"] == "active"
    assert seen["enis"][0]["Status"] == "in-use"


# --- c) launching lifecycle hooks ----------------------------------------------------------------


def test_instance_waits_in_pending_wait_until_continue(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    (pending,) = group_instances(aws, "nat-a")
    assert pending["LifecycleState"] == "Pending:Wait"
    aws.client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName="nat-a",
        LifecycleHookName="launch",
        LifecycleActionResult="CONTINUE",
        InstanceId=pending["InstanceId"],
    )
    (ready,) = group_instances(aws, "nat-a")
    assert (ready["InstanceId"], ready["LifecycleState"]) == (pending["InstanceId"], "InService")
    (action,) = moto_fixes.LIFECYCLE.actions(pending["InstanceId"])
    assert (action.result, action.accepted) == ("CONTINUE", True)


def test_abandon_is_recorded_and_marks_the_instance_unhealthy(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    instance = only_instance(aws, "nat-a")
    aws.client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName="nat-a",
        LifecycleHookName="launch",
        LifecycleActionResult="ABANDON",
        InstanceId=instance,
    )
    (state,) = group_instances(aws, "nat-a")
    assert (state["LifecycleState"], state["HealthStatus"]) == ("Pending:Proceed", "Unhealthy")
    assert [a.result for a in moto_fixes.LIFECYCLE.actions(instance)] == ["ABANDON"]


def test_complete_without_a_pending_action_is_rejected_like_aws(aws: MotoBackend) -> None:
    make_group(aws, hook=False)
    aws.client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName="nat-a", LifecycleHookName="launch", LifecycleTransition=LAUNCHING
    )
    instance = only_instance(aws, "nat-a")
    with pytest.raises(ClientError, match="No active Lifecycle Action"):
        aws.client("autoscaling").complete_lifecycle_action(
            AutoScalingGroupName="nat-a",
            LifecycleHookName="launch",
            LifecycleActionResult="CONTINUE",
            InstanceId=instance,
        )
    assert [a.accepted for a in moto_fixes.LIFECYCLE.actions(instance)] == [False]


def test_plain_moto_still_lacks_complete_lifecycle_action(aws: MotoBackend) -> None:
    with moto_fixes.without("lifecycle_hooks"):
        make_group(aws, hook=True)
        (instance,) = group_instances(aws, "nat-a")
        assert instance["LifecycleState"] == "InService"
        with pytest.raises(MOTO_SERVER_ERROR):
            aws.client("autoscaling", retries={"max_attempts": 1}).complete_lifecycle_action(
                AutoScalingGroupName="nat-a",
                LifecycleHookName="launch",
                LifecycleActionResult="CONTINUE",
                InstanceId=instance["InstanceId"],
            )


# --- d) EBS mapping without a size ---------------------------------------------------------------


def test_encrypted_root_volume_without_size_launches_with_the_image_size(aws: MotoBackend) -> None:
    make_group(aws, encrypted_root=True)
    instance = only_instance(aws, "nat-a")
    volumes = aws.client("ec2").describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance]}])[
        "Volumes"
    ]
    # moto also attaches its own default root volume (/dev/sda1) next to the template's mapping
    assert (8, True) in [(v["Size"], v["Encrypted"]) for v in volumes]


@pytest.mark.filterwarnings("ignore:Exception\\(MissingParameterError\\):UserWarning")
def test_plain_moto_still_rejects_a_mapping_without_size(aws: MotoBackend) -> None:
    with moto_fixes.without("block_device_size_from_image"), pytest.raises(ClientError, match="size"):
        make_group(aws, encrypted_root=True)


def _maintenance_policy(aws: MotoBackend, name: str) -> dict | None:
    group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return group.get("InstanceMaintenancePolicy")


def test_group_keeps_its_instance_maintenance_policy(aws: MotoBackend) -> None:
    make_group(aws)
    aws.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName="nat-a",
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )
    assert _maintenance_policy(aws, "nat-a") == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200}


def test_plain_moto_still_drops_the_instance_maintenance_policy(aws: MotoBackend) -> None:
    make_group(aws)
    with moto_fixes.without("group_parameters"):
        aws.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName="nat-a",
            InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
        )
        assert _maintenance_policy(aws, "nat-a") is None


def _grace_period(aws: MotoBackend, name: str) -> int:
    group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return group["HealthCheckGracePeriod"]


@pytest.mark.parametrize("grace_period", [0, None])  # Terraform leaves a zero out of the request
def test_a_grace_period_of_zero_stays_zero(aws: MotoBackend, grace_period: int | None) -> None:
    make_group(aws, grace_period=grace_period)
    assert _grace_period(aws, "nat-a") == 0


def test_plain_moto_still_turns_a_zero_grace_period_into_300(aws: MotoBackend) -> None:
    with moto_fixes.without("group_parameters"):
        make_group(aws, grace_period=0)
    assert _grace_period(aws, "nat-a") == 300


def test_taking_one_fix_away_leaves_a_fix_wrapping_the_same_method_in_place(aws: MotoBackend) -> None:
    # lifecycle_hooks and group_parameters both wrap CreateAutoScalingGroup.
    with moto_fixes.without("lifecycle_hooks"):
        pass
    make_group(aws, grace_period=0)
    assert _grace_period(aws, "nat-a") == 0


# --- e) DescribeNetworkInterfaces filtered on attachment.device-index ---------------------------


def _enis_by_device_index(aws: MotoBackend, index: str) -> tuple[list[str], dict[str, str]]:
    """(ENI ids of one instance at device ``index``, {"primary": id, "secondary": id})."""
    ec2 = aws.client("ec2", retries={"max_attempts": 1})
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(ImageId="ami-03c3da4cfa8e8943a", MinCount=1, MaxCount=1, SubnetId=subnet)
    instance_id = instance["Instances"][0]["InstanceId"]
    primary = instance["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    secondary = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=secondary, InstanceId=instance_id, DeviceIndex=1)
    ec2.create_network_interface(SubnetId=subnet)  # detached: matches no device index
    found = ec2.describe_network_interfaces(
        Filters=[
            {"Name": "attachment.instance-id", "Values": [instance_id]},
            {"Name": "attachment.device-index", "Values": [index]},
        ]
    )["NetworkInterfaces"]
    return [eni["NetworkInterfaceId"] for eni in found], {"primary": primary, "secondary": secondary}


@pytest.mark.parametrize(("index", "expected"), [("0", "primary"), ("1", "secondary")])
def test_network_interfaces_can_be_filtered_on_device_index(aws: MotoBackend, index: str, expected: str) -> None:
    found, enis = _enis_by_device_index(aws, index)
    assert found == [enis[expected]]


def test_device_index_filter_matches_no_detached_interface(aws: MotoBackend) -> None:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    ec2.create_network_interface(SubnetId=subnet)
    found = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.device-index", "Values": ["0"]}])
    assert found["NetworkInterfaces"] == []


def test_plain_moto_still_lacks_the_device_index_filter(aws: MotoBackend) -> None:
    with moto_fixes.without("network_interface_device_index_filter"), pytest.raises(MOTO_SERVER_ERROR):
        _enis_by_device_index(aws, "0")


# --- warm pool -----------------------------------------------------------------------------------


def _prepared_warm_instance(aws: MotoBackend, name: str = "nat-a") -> str:
    """Puts a Stopped warm pool on the group and walks its one instance through preparation."""
    autoscaling = aws.client("autoscaling")
    autoscaling.put_warm_pool(AutoScalingGroupName=name, MinSize=1, PoolState="Stopped")
    keeper = WarmPoolKeeper(aws, emit=lambda kind, instance_id: None, config_refresh=0.0)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    keeper.poll(group)  # launches into the pool
    (instance,) = autoscaling.describe_warm_pool(AutoScalingGroupName=name)["Instances"]
    assert instance["LifecycleState"] == warm_pool.PENDING
    autoscaling.complete_lifecycle_action(  # what the boot script does once prepared
        AutoScalingGroupName=name,
        LifecycleHookName="launch",
        LifecycleActionResult="CONTINUE",
        InstanceId=instance["InstanceId"],
    )
    keeper.poll(group)  # stops it
    (instance,) = autoscaling.describe_warm_pool(AutoScalingGroupName=name)["Instances"]
    assert instance["LifecycleState"] == warm_pool.STOPPED
    return instance["InstanceId"]


def _state(aws: MotoBackend, instance_id: str) -> str:
    reservation = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return reservation["Instances"][0]["State"]["Name"]


def test_a_replacement_is_the_prepared_warm_instance_started(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    serving = only_instance(aws, "nat-a")
    prepared = _prepared_warm_instance(aws)
    assert _state(aws, prepared) == "stopped"
    aws.client("ec2").terminate_instances(InstanceIds=[serving])
    (member,) = group_instances(aws, "nat-a")
    assert (member["InstanceId"], member["LifecycleState"]) == (prepared, "Pending:Wait")
    assert _state(aws, prepared) == "running"
    assert warm_pool.WARM.target_state(prepared) == "InService"
    assert aws.client("autoscaling").describe_warm_pool(AutoScalingGroupName="nat-a")["Instances"] == []


def test_an_abandoned_warm_instance_is_terminated_and_the_pool_refilled(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    autoscaling = aws.client("autoscaling")
    autoscaling.put_warm_pool(AutoScalingGroupName="nat-a", MinSize=1)
    keeper = WarmPoolKeeper(aws, emit=lambda kind, instance_id: None, config_refresh=0.0)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["nat-a"])["AutoScalingGroups"]
    keeper.poll(group)
    (broken,) = warm_pool.WARM.members("nat-a")
    autoscaling.complete_lifecycle_action(
        AutoScalingGroupName="nat-a",
        LifecycleHookName="launch",
        LifecycleActionResult="ABANDON",
        InstanceId=broken.instance_id,
    )
    keeper.poll(group)
    assert _state(aws, broken.instance_id) == "terminated"
    (refill,) = autoscaling.describe_warm_pool(AutoScalingGroupName="nat-a")["Instances"]
    assert refill["InstanceId"] != broken.instance_id and refill["LifecycleState"] == warm_pool.PENDING


def test_deleting_the_warm_pool_terminates_its_instances(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    prepared = _prepared_warm_instance(aws)
    aws.client("autoscaling").delete_warm_pool(AutoScalingGroupName="nat-a", ForceDelete=True)
    assert _state(aws, prepared) == "terminated"
    assert warm_pool.WARM.members("nat-a") == []


def test_plain_moto_lists_no_warm_instance_and_launches_cold(aws: MotoBackend) -> None:
    make_group(aws, hook=True)
    serving = only_instance(aws, "nat-a")
    prepared = _prepared_warm_instance(aws)
    with moto_fixes.without("warm_pool"):
        answer = aws.client("autoscaling").describe_warm_pool(AutoScalingGroupName="nat-a")
        assert answer["Instances"] == []
        aws.client("ec2").terminate_instances(InstanceIds=[serving])
        (member,) = group_instances(aws, "nat-a")
        assert member["InstanceId"] != prepared


def test_a_warm_instance_past_its_heartbeat_gets_the_hooks_default_result(aws: MotoBackend) -> None:
    make_group(aws, hook=True)  # DefaultResult ABANDON
    autoscaling = aws.client("autoscaling")
    autoscaling.put_warm_pool(AutoScalingGroupName="nat-a", MinSize=1)
    keeper = WarmPoolKeeper(aws, emit=lambda kind, instance_id: None, config_refresh=0.0, lifecycle_timeout=0.0)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["nat-a"])["AutoScalingGroups"]
    keeper.poll(group)  # launches
    (silent,) = warm_pool.WARM.members("nat-a")
    keeper.poll(group)  # timed out: ABANDON
    keeper.poll(group)  # terminated, and another launched
    assert _state(aws, silent.instance_id) == "terminated"
    assert [m.instance_id for m in warm_pool.WARM.members("nat-a")] != [silent.instance_id]


def test_a_pool_instance_launched_while_its_pool_is_deleted_is_terminated(aws: MotoBackend) -> None:
    ids = make_group(aws, hook=True)
    autoscaling = aws.client("autoscaling")
    autoscaling.put_warm_pool(AutoScalingGroupName="nat-a", MinSize=1)
    keeper = WarmPoolKeeper(aws, emit=lambda kind, instance_id: None)  # caches DescribeWarmPool for 1 s
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["nat-a"])["AutoScalingGroups"]
    keeper.poll(group)
    autoscaling.delete_warm_pool(AutoScalingGroupName="nat-a", ForceDelete=True)
    # A launch that raced the deletion: the keeper had already decided the pool needed it.
    ec2 = aws.client("ec2")
    late = ec2.run_instances(ImageId="ami-03c3da4cfa8e8943a", MinCount=1, MaxCount=1, SubnetId=ids["subnet"])
    warm_pool.WARM.add("nat-a", late["Instances"][0]["InstanceId"])
    keeper.poll(group)  # the deletion is seen at once, not after the cache's second
    assert _state(aws, late["Instances"][0]["InstanceId"]) == "terminated"
    assert warm_pool.WARM.members("nat-a") == []
