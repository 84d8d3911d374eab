"""A reboot (RebootInstances) restarts an instance from its disk: the NAT serves again only from what its first
boot persisted (issue 11). The lab's scenario with traffic is in test_three_zones.py; here the parts.

moto's fix counts the reboot (``moto_fix_reboot.py``); the fleet ends the sandbox's processes and namespace
(the kernel's state) and starts its enabled units from the same instance dir (``reboots.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_image_profiles import _port, _route_target, needs_netns

from natlab.cloud import moto_fixes
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import VPC_CIDR, CloudLab
from natlab.cloud.fleet import ASG_TAG, InstanceFleet
from natlab.cloud.image import Image
from natlab.cloud.reboots import REBOOTS
from natlab.cloud.sandbox import InstanceSandbox
from natlab.module.userdata import render
from natlab.waiting import wait_until

#: Short: the OS restart is not what these tests look at (the lab scales the AWS estimate instead).
REBOOT_SECONDS = 0.3
BOOT_TIMEOUT = 60.0
UNIT_LINK = "systemd/system/multi-user.target.wants/nat-instance.service"


def test_a_reboot_of_a_running_instance_is_counted_and_of_a_stopped_one_refused(aws: Any, lab: CloudLab) -> None:
    lab.ec2.reboot_instances(InstanceIds=[lab.nat_a])
    assert REBOOTS.count(lab.nat_a) == 1 and REBOOTS.count(lab.nat_b) == 0
    lab.ec2.stop_instances(InstanceIds=[lab.nat_b])
    with pytest.raises(ClientError, match="IncorrectInstanceState"):
        lab.ec2.reboot_instances(InstanceIds=[lab.nat_b])
    assert _state(lab, lab.nat_b) == "stopped" and REBOOTS.count(lab.nat_b) == 0


def test_plain_moto_turns_a_stopped_instance_running_on_reboot(aws: Any, lab: CloudLab) -> None:
    lab.ec2.stop_instances(InstanceIds=[lab.nat_b])
    with moto_fixes.without("reboot_instances"):
        lab.ec2.reboot_instances(InstanceIds=[lab.nat_b])
    assert _state(lab, lab.nat_b) == "running", "moto fixed it upstream: drop the state part of the fix"


def _instance(lab: CloudLab, instance_id: str) -> dict[str, Any]:
    return lab.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def _state(lab: CloudLab, instance_id: str) -> str:
    return _instance(lab, instance_id)["State"]["Name"]


@needs_netns
def test_a_rebooted_nat_forwards_again_only_from_its_persisted_unit(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    zone = _instance(lab, lab.nat_b)["Placement"]["AvailabilityZone"]
    user_data = render(zone=zone, asg_name="natlab-nat-b", route_table_ids=[lab.private_rtb], served_cidrs=[VPC_CIDR])
    lab.ec2.create_tags(Resources=[lab.nat_b], Tags=[{"Key": ASG_TAG, "Value": "natlab-nat-b"}])  # the fleet's
    with InstanceFleet(
        _port(aws),
        region=lab.ec2.meta.region_name,
        workdir=tmp_path,
        reboots=REBOOTS,
        reboot_seconds=REBOOT_SECONDS,
        image=Image("baked"),
        attach=vpc.attach,
        user_data_transform=lambda _: user_data.encode(),
    ) as fleet:
        first = fleet.wait_booted(lab.nat_b, timeout=5)
        assert first.wait(timeout=BOOT_TIMEOUT) == 0, first.describe()
        assert vpc.whoami() == lab.public_ip[lab.nat_b], "NAT B serves after its first boot"

        again = reboot(lab, fleet, first)
        assert again.dir == first.dir and again.started_again
        assert first.terminated and first.proc is not None and first.proc.poll() is not None, "its processes went"
        assert again.wait(timeout=BOOT_TIMEOUT) == 0, again.describe()
        assert forwarding(again) == ("1", True), again.describe()
        assert vpc.whoami() == lab.public_ip[lab.nat_b], "forwarding and masquerade are back"
        start = again.boot_log().split("boot mode start", 1)[1]
        assert "step=masquerade done" in start and "routes already point at" in start, again.describe()
        assert _route_target(lab) == lab.eni[lab.nat_b]

        # Without the unit its first boot enabled, nothing brings the rules back: a reboot ends the NAT.
        (again.upper("/etc") / UNIT_LINK).unlink()
        disabled = reboot(lab, fleet, again)
        assert disabled.wait(timeout=BOOT_TIMEOUT) == 0, disabled.describe()
        assert disabled.boot_log().count("boot mode start") == 1, "the script ran at the first reboot only"
        assert forwarding(disabled) == ("0", False), disabled.describe()
        with pytest.raises(OSError):
            vpc.whoami(timeout=1.0)
    kinds = [e.kind for e in fleet.events if e.instance_id == lab.nat_b]
    assert kinds.count("rebooted") == 2 and kinds.count("start") == 2, kinds


def reboot(lab: CloudLab, fleet: InstanceFleet, box: InstanceSandbox) -> InstanceSandbox:
    """RebootInstances on ``box``'s instance; its sandbox after the fleet restarted it."""
    lab.ec2.reboot_instances(InstanceIds=[box.identity.instance_id])
    return wait_until(
        lambda: (new := fleet.get(box.identity.instance_id)) is not box and new,
        what="the fleet's restart of the rebooted instance",
        timeout=5,
        interval=0.05,
    )


def forwarding(box: InstanceSandbox) -> tuple[str, bool]:
    """The instance kernel's ``net.ipv4.ip_forward``, and whether its ruleset masquerades."""
    assert box.ns is not None
    ip_forward = box.ns.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.decode().strip()
    ruleset = box.ns.run(["nft", "list", "ruleset"]).stdout.decode()
    return ip_forward, "masquerade" in ruleset
