"""A warm pool on one zone of a running lab, through the Auto Scaling API (as an operator would add one).

The lab's Terraform configuration has no warm pool (the fixture's ``warm_pool`` is null), so a
scenario puts one with PutWarmPool for its own length and deletes it (ForceDelete: its instances are
terminated) at the end: the next plan is empty again, and no second Terraform apply is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from natlab.cloud.warm_pool import STOPPED
from natlab.lab.lab import Lab
from natlab.waiting import wait_until


@contextlib.contextmanager
def warm_pool(lab: Lab, zone: str, min_size: int = 1) -> Iterator[None]:
    """The zone's group has a Stopped warm pool of ``min_size`` during the block."""
    group = lab.zones[zone].asg_name
    lab.autoscaling.put_warm_pool(AutoScalingGroupName=group, MinSize=min_size, PoolState="Stopped")
    try:
        yield
    finally:
        members = list(pool_members(lab, zone))
        lab.autoscaling.delete_warm_pool(AutoScalingGroupName=group, ForceDelete=True)
        if members:
            wait_until(
                lambda: _all_terminated(lab, members),
                what=f"the warm pool instances {members} of {group} to be terminated",
                timeout=10,
                interval=0.05,
            )


def pool_members(lab: Lab, zone: str) -> dict[str, str]:
    """Instance id -> warm lifecycle state (``Warmed:Pending:Wait``, ``Warmed:Stopped``...), per DescribeWarmPool."""
    answer = lab.autoscaling.describe_warm_pool(AutoScalingGroupName=lab.zones[zone].asg_name)
    return {i["InstanceId"]: i["LifecycleState"] for i in answer.get("Instances", [])}


def wait_for_member(lab: Lab, zone: str, state: str = STOPPED, *, besides: set[str] | None = None) -> str:
    """A pool member of the zone in ``state`` (other than ``besides``); within the lab's SLA."""

    def member() -> str | None:
        found = [i for i, s in pool_members(lab, zone).items() if s == state and i not in (besides or set())]
        return found[0] if found else None

    return wait_until(
        member, what=f"a {state} warm instance in {zone}", timeout=lab.settings.sla, interval=0.05, max_interval=0.5
    )


def _all_terminated(lab: Lab, instance_ids: list[str]) -> bool:
    reservations = lab.ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return all(i["State"]["Name"] in ("shutting-down", "terminated") for r in reservations for i in r["Instances"])
