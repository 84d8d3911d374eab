"""A standby per zone (module input ``takeover = "standby"``) in a lab: finding it and reading its watcher.

The standby is its zone's second group of one (``<name>-<zone>-standby``). It boots prepared but
serves nothing; its watcher (``nat-instance-watch.service``, the boot script in ``watch`` mode)
probes the zone's NAT through a VXLAN tunnel whose far end the NAT opened passively, and takes the
zone's Elastic IP and routes when that NAT is dead or no longer forwards.
"""

from __future__ import annotations

from natlab.cloud.sandbox import InstanceSandbox
from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import watch_log
from natlab.waiting import wait_until


def standby_of(lab: Lab, zone: str) -> str:
    """The zone's standby: the one InService instance of its standby group."""
    group = lab.outputs["standby_autoscaling_group_names"][zone]
    answer = lab.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    serving = [i["InstanceId"] for i in answer["Instances"] if i["LifecycleState"] == "InService"]
    if len(serving) != 1:
        raise AssertionError(f"{zone}: expected exactly one InService standby in {group}, found {serving}")
    return serving[0]


def standby_box(lab: Lab, zone: str) -> InstanceSandbox:
    box = lab.sandbox(standby_of(lab, zone))
    assert box is not None, f"{zone}: no sandbox for its standby"
    return box


def wait_for_standby(lab: Lab, zone: str, timeout: float = 60.0) -> InstanceSandbox:
    """Until the standby's probes through the zone's current NAT answer: the steady state a fault meets.

    The last line its watcher logged about the zone must be ``probes zone=<zone> answer``: a new NAT
    (or tunnel) is logged when seen, so an answer logged after it came through that NAT.
    """
    box = standby_box(lab, zone)

    def answering() -> bool:
        lines = [line for line in watch_log(box).splitlines() if f"zone={zone} " in line or f"(zone {zone})" in line]
        return bool(lines) and f"probes zone={zone} answer" in lines[-1]

    wait_until(lambda: answering() or None, what=f"the standby's probes through {zone}'s NAT", timeout=timeout)
    return box


def takeover_lines(box: InstanceSandbox, zone: str) -> list[str]:
    """The standby's takeover lines for ``zone``."""
    return [line for line in watch_log(box).splitlines() if f"takeover zone={zone} " in line]


def elastic_ip_eni(lab: Lab, zone: str) -> str | None:
    """The ENI the zone's Elastic IP is associated with now (None: none, or no Elastic IP)."""
    allocation = lab.zones[zone].eip_allocation_id
    if not allocation:
        return None
    address = lab.ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    return address.get("NetworkInterfaceId")
