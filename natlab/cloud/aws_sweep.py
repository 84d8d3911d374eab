"""The steps of AwsBackend.sweep: delete what a run tagged ``natlab:run-id=<id>``, in dependency order.

Each step takes the backend, the run id and the list of what was deleted so far; a failure on one
resource is logged and the sweep goes on (``_attempt``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import botocore.exceptions

if TYPE_CHECKING:
    from natlab.cloud.backend import Backend

logger = logging.getLogger(__name__)
RUN_ID_TAG = "natlab:run-id"


# --- sweep steps --------------------------------------------------------------


def _tag_filter(run_id: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{RUN_ID_TAG}", "Values": [run_id]}]


def _has_tag(tags: Iterable[dict[str, str]], run_id: str) -> bool:
    return any(t.get("Key") == RUN_ID_TAG and t.get("Value") == run_id for t in tags)


def _attempt(deleted: list[str], what: str, call: Callable[[], object]) -> None:
    try:
        call()
        deleted.append(what)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        logger.warning("sweep: could not delete %s: %s", what, error)


def _sweep_groups(backend: Backend, run_id: str, deleted: list[str]) -> None:
    autoscaling = backend.client("autoscaling")
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate():
        for group in page["AutoScalingGroups"]:
            if _has_tag(group.get("Tags", []), run_id):
                name = group["AutoScalingGroupName"]
                _attempt(
                    deleted,
                    f"asg/{name}",
                    lambda n=name: autoscaling.delete_auto_scaling_group(AutoScalingGroupName=n, ForceDelete=True),
                )


def _sweep_instances(backend: Backend, run_id: str, deleted: list[str]) -> None:
    ec2 = backend.client("ec2")
    ids = [
        i["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=_tag_filter(run_id))
        for r in page["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    if ids:
        _attempt(deleted, f"instances/{','.join(ids)}", lambda: ec2.terminate_instances(InstanceIds=ids))
        try:
            ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 60})
        except botocore.exceptions.WaiterError as error:
            logger.warning("sweep: instances not terminated yet: %s", error)


def _sweep_alarms(backend: Backend, run_id: str, deleted: list[str]) -> None:
    cloudwatch = backend.client("cloudwatch")
    for page in cloudwatch.get_paginator("describe_alarms").paginate():
        for alarm in page["MetricAlarms"]:
            tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
            if _has_tag(tags, run_id):
                name = alarm["AlarmName"]
                _attempt(deleted, f"alarm/{name}", lambda n=name: cloudwatch.delete_alarms(AlarmNames=[n]))


def _sweep_launch_templates(backend: Backend, run_id: str, deleted: list[str]) -> None:
    ec2 = backend.client("ec2")
    for template in ec2.describe_launch_templates(Filters=_tag_filter(run_id))["LaunchTemplates"]:
        tid = template["LaunchTemplateId"]
        _attempt(deleted, f"lt/{tid}", lambda t=tid: ec2.delete_launch_template(LaunchTemplateId=t))


def _sweep_addresses(backend: Backend, run_id: str, deleted: list[str]) -> None:
    ec2 = backend.client("ec2")
    for address in ec2.describe_addresses(Filters=_tag_filter(run_id))["Addresses"]:
        if address.get("AssociationId"):
            ec2.disassociate_address(AssociationId=address["AssociationId"])
        alloc = address["AllocationId"]
        _attempt(deleted, f"eip/{alloc}", lambda a=alloc: ec2.release_address(AllocationId=a))


def _sweep_interfaces(backend: Backend, run_id: str, deleted: list[str]) -> None:
    ec2 = backend.client("ec2")
    for eni in ec2.describe_network_interfaces(Filters=_tag_filter(run_id))["NetworkInterfaces"]:
        eid = eni["NetworkInterfaceId"]
        if eni.get("Status") == "available":
            _attempt(deleted, f"eni/{eid}", lambda e=eid: ec2.delete_network_interface(NetworkInterfaceId=e))


def _sweep_security_groups(backend: Backend, run_id: str, deleted: list[str]) -> None:
    ec2 = backend.client("ec2")
    for group in ec2.describe_security_groups(Filters=_tag_filter(run_id))["SecurityGroups"]:
        gid = group["GroupId"]
        _attempt(deleted, f"sg/{gid}", lambda g=gid: ec2.delete_security_group(GroupId=g))


def _sweep_roles(backend: Backend, run_id: str, deleted: list[str]) -> None:
    iam = backend.client("iam")
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name = role["RoleName"]
            if _has_tag(iam.list_role_tags(RoleName=name)["Tags"], run_id):
                _attempt(deleted, f"role/{name}", lambda n=name: _delete_role(iam, n))


def _delete_role(iam: Any, name: str) -> None:
    for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        profile_name = profile["InstanceProfileName"]
        iam.remove_role_from_instance_profile(InstanceProfileName=profile_name, RoleName=name)
        iam.delete_instance_profile(InstanceProfileName=profile_name)
    for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


SWEEP_STEPS = (
    _sweep_groups,
    _sweep_instances,
    _sweep_alarms,
    _sweep_launch_templates,
    _sweep_addresses,
    _sweep_interfaces,
    _sweep_security_groups,
    _sweep_roles,
)
