"""Standby (module input ``takeover = "standby"``): one zone, its NAT and a standby that covers it in seconds.

The standby is the zone's second group of one. It boots prepared (forwarding, masquerade, check off)
but takes no route and no Elastic IP; its watcher probes the zone's NAT about every second through a
VXLAN tunnel the NAT opened passively, and takes the zone's Elastic IP and routes when the NAT is
dead (at once) or running but not forwarding (after the hold). The NAT's replacement, booting after
a modelled 15 s (half of AWS's ~30 s: ``REPLACEMENT_BOOT_DELAY``), takes them back at boot. Real
packets throughout: a UDP echo stream from the zone's private workload measures the outage.

Order matters: the hung scenario runs first. A zone given back is held down (no "not forwarding"
takeover for 120 s, against flapping); the terminate scenario's rule (peer-dead) is never held down.
Last, the module is destroyed in the middle of a failover (the largest configuration the harness
runs with one zone, so its destroy covers the one-zone lab's resources and the standby's).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from natlab.cloud.netns_names import list_namespaces
from natlab.lab.failover import inject
from natlab.lab.lab import Lab
from natlab.lab.open import ONE_ZONE
from natlab.lab.peer_takeover import (
    REPLACEMENT_BOOT_DELAY,
    TAKEOVER_WAIT,
    hang_forwarding,
    outage_until,
    watch_log,
    watch_logs_on_failure,
)
from natlab.lab.spot import interrupt_spot
from natlab.lab.standby import elastic_ip_eni, standby_of, takeover_lines, wait_for_standby
from natlab.waiting import wait_until

ZONE = ONE_ZONE[0]
#: The longest gap a handover may make: the Elastic IP and the routes change hands one call apart,
#: both NATs up (a switch, not an outage; 0.12 s, 12 datagrams at 100/s, in the first lab run).
ROUTE_SWITCH_SECONDS = 0.25
#: Probes (1 s apart) the standby may miss through a replacement before its tunnel end is up.
PROBE_MISSES_AFTER_GIVE_BACK = 5
pytestmark = pytest.mark.xdist_group("standby_lab")


def covered_by(lab: Lab, eni: str) -> bool | None:
    return set(lab.route_targets(ZONE).values()) == {eni} or None


def test_a_hung_nat_is_covered_by_its_standby_and_replaced(standby_lab: Lab, record_fault):
    lab = standby_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    box = wait_for_standby(lab, ZONE)
    standby = standby_of(lab, ZONE)
    standby_eni = lab.primary_eni(standby)
    hung = lab.current_nat(ZONE)
    hung_box = lab.sandbox(hung)
    assert hung_box is not None and hung_box.ns is not None
    with (
        watch_logs_on_failure(lab, [standby, hung]),
        lab.watching_closely(),
        lab.vpc.udp_stream(lab.zones[ZONE].private_subnet_id, rate=100) as stream,
    ):
        stream.wait_received(10)
        fault_at = time.monotonic()
        hang_forwarding(hung_box)
        wait_until(
            lambda: covered_by(lab, standby_eni),
            what=f"the standby to take the hung {ZONE}'s routes",
            timeout=TAKEOVER_WAIT + 10,  # the not-forwarding hold (8 s) comes on top
        )
        covered_at = time.monotonic()
        new = lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
        stream.stop()
    gap = outage_until(stream, fault_at, covered_at).seconds
    record_fault(
        "forwarding stopped in a running, healthy NAT (standby)", "peer-not-forwarding: covered by the standby", gap
    )
    assert new != hung, "the hung NAT must be replaced"
    lines = takeover_lines(box, ZONE)
    assert lines and "rule=peer-not-forwarding" in lines[-1], lines
    assert f"marked {hung} unhealthy" in watch_log(box)
    wait_until(lambda: hung not in lab.group_instances(ZONE) or None, what="the hung NAT to go", timeout=60)


def test_a_terminated_nat_is_covered_by_its_standby_until_its_replacement_boots(standby_lab: Lab, record_fault):
    lab = standby_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    box = wait_for_standby(lab, ZONE)
    standby = standby_of(lab, ZONE)
    standby_eni = lab.primary_eni(standby)
    old = lab.current_nat(ZONE)
    takeovers_before = len(takeover_lines(box, ZONE))
    give_backs_before = watch_log(box).count(f"give-back zone={ZONE}")
    with (
        watch_logs_on_failure(lab, [standby, old]),
        lab.modelled_boot_delay(REPLACEMENT_BOOT_DELAY),
        lab.watching_closely(),
        lab.vpc.udp_stream(lab.zones[ZONE].private_subnet_id, rate=100, duration=120) as stream,
    ):
        stream.wait_received(10)
        fault_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[old])
        wait_until(
            lambda: covered_by(lab, standby_eni), what=f"the standby to take {ZONE}'s routes", timeout=TAKEOVER_WAIT
        )
        covered_at = time.monotonic()
        address_while_covered = elastic_ip_eni(lab, ZONE)
        new = lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
        given_back_at = time.monotonic()
        stream.stop()
    outage = outage_until(stream, fault_at, covered_at)
    record_fault(
        f"terminate {ZONE}'s NAT, replacement boots after {REPLACEMENT_BOOT_DELAY:.0f} s (standby)",
        f"covered by the standby {standby}, given back to {new}",
        outage.seconds,
        f"{outage.lost} datagrams lost until covered, {stream.result.lost} in all (give-back included)",
    )
    # Egress came back through the standby, before the replacement could have served the zone.
    assert outage.seconds <= lab.settings.sla
    assert outage.end < given_back_at, (
        f"the outage ({outage.seconds:.1f} s) lasted until the replacement took the routes"
    )
    assert new != old
    lines = takeover_lines(box, ZONE)[takeovers_before:]
    assert len(lines) == 1 and "rule=peer-dead" in lines[0], lines
    # The zone kept its egress address: the standby took the Elastic IP, the replacement took it back.
    assert address_while_covered == standby_eni
    assert elastic_ip_eni(lab, ZONE) == lab.primary_eni(new)
    wait_until(
        lambda: watch_log(box).count(f"give-back zone={ZONE}") > give_backs_before or None,
        what="the standby to log the give-back",
        timeout=30,
    )
    # Ready for the next failure: the standby's probes answer through the replacement's passive tunnel
    # end at once. A tunnel kept because the replacement got its predecessor's address missed 27
    # probes (its neighbour entry still held the old end's MAC); a new NAT now gets a new tunnel.
    wait_for_standby(lab, ZONE)
    answers = re.findall(rf"probes zone={ZONE} answer \(after (\d+) misses\)", watch_log(box))
    assert answers and int(answers[-1]) <= PROBE_MISSES_AFTER_GIVE_BACK, answers


def test_a_spot_notice_hands_the_zone_to_its_standby_before_ec2_takes_the_nat(standby_lab: Lab, record_fault):
    lab = standby_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    box = wait_for_standby(lab, ZONE)  # its probes taught the NAT's passive tunnel end its address
    standby = standby_of(lab, ZONE)
    standby_eni = lab.primary_eni(standby)
    old = lab.current_nat(ZONE)
    old_box = lab.sandbox(old)
    assert old_box is not None
    takeovers_before = len(takeover_lines(box, ZONE))
    # The replacement boots without the modelled delay: what is checked happens before the termination.
    with (
        watch_logs_on_failure(lab, [standby, old]),
        lab.watching_closely(),
        lab.vpc.udp_stream(lab.zones[ZONE].private_subnet_id, rate=100, duration=120) as stream,
    ):
        stream.wait_received(10)
        with interrupt_spot(lab, ZONE) as interruption:
            wait_until(
                lambda: covered_by(lab, standby_eni),
                what=f"{ZONE}'s NAT to hand its routes to the standby",
                timeout=interruption.period,
            )
            handed_at = time.monotonic()
            interruption.wait_terminated(timeout=interruption.period + 10)
        new = lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
        stream.stop()
    before_termination = [g for g in stream.result.gaps() if g.start < (interruption.terminated_at or 0)]
    record_fault(
        f"spot interruption notice in {ZONE} ({interruption.period:.0f} s, AWS 120 s), then termination (standby)",
        f"handed to the standby {standby} {handed_at - interruption.noticed_at:.1f} s after the notice, "
        f"given back to {new}",
        max((g.end - g.start for g in before_termination), default=0.0),
        f"{sum(g.lost for g in before_termination)} datagrams lost before the termination, {stream.result.lost} in all",
    )
    assert handed_at < interruption.terminates_at, "the routes moved only when EC2 took the NAT"
    handover = [line for line in watch_log(old_box).splitlines() if "handover zone=" in line]
    assert len(handover) == 1 and f"rule=spot-interruption to={standby_eni}" in handover[0], handover
    # Handed over, not taken over: the standby never judged the NAT.
    assert takeover_lines(box, ZONE)[takeovers_before:] == []
    # Both NATs forwarded while the address and the routes moved: at most one switch, no outage.
    assert len(before_termination) <= 1, before_termination
    assert all(g.end - g.start <= ROUTE_SWITCH_SECONDS for g in before_termination), before_termination
    assert new != old
    wait_for_standby(lab, ZONE)


# Last: the lab is destroyed under a failover (it replaces the lab's own destroy at the end).
def test_destroy_in_the_middle_of_a_failover_leaves_nothing_behind(standby_lab: Lab, record_fault):
    """The NAT dies and, while its standby covers and its replacement boots, the module is destroyed under it.

    The emulated cloud keeps running through the destroy (as AWS would): the booting replacement
    meets its route table, group and hook disappearing. The destroy must finish and leave nothing,
    neither in the emulator nor on the host (namespaces, processes).
    """
    lab = standby_lab
    names = [*lab.outputs["autoscaling_group_names"].values(), *lab.outputs["standby_autoscaling_group_names"].values()]
    alarms = list(lab.outputs["status_check_alarm_names"].values())
    roles = set(lab.outputs["iam_role_names"].values())
    dead = lab.current_nat(ZONE)
    inject(lab, dead, "terminate")
    replacement = wait_until(
        lambda: next((i for i in lab.group_instances(ZONE) if i != dead and lab.sandbox(i)), None),
        timeout=60,
        interval=0.2,
        what="a replacement booting in the emulated fleet",
    )
    started = time.monotonic()
    lab.destroy(cloud_running=True)
    took = time.monotonic() - started
    instance_ids = {i["InstanceId"] for r in lab.ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    left = {
        "auto scaling groups": lab.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=names)[
            "AutoScalingGroups"
        ],
        "alarms": lab.backend.client("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"] if alarms else [],
        "launch templates": [
            t
            for t in lab.ec2.describe_launch_templates()["LaunchTemplates"]
            if t["LaunchTemplateName"].startswith(lab.config.name)
        ],
        "roles": [r for r in lab.backend.client("iam").list_roles()["Roles"] if r["RoleName"] in roles],
        "running instances": [
            i["InstanceId"]
            for r in lab.ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")
        ],
        "vpcs": lab.ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [lab.config.name]}])["Vpcs"],
        "addresses": lab.ec2.describe_addresses()["Addresses"],
        "namespaces": [ns for ns in list_namespaces() if any(i in ns for i in instance_ids)],
        "processes": processes_mentioning(instance_ids),
    }
    assert {kind: found for kind, found in left.items() if found} == {}
    record_fault(
        "terraform destroy while the replacement boots",
        f"destroy completed, nothing left (replacement {replacement} was booting)",
        detail=f"destroy took {took:.1f} s",
    )
    # The lab's Terraform commands shared one provider process, which ends with the workdir.
    workdir, provider = lab.terraform, lab.terraform.provider_pid
    assert provider is not None, "the lab's Terraform commands did not share one provider process"
    assert set(workdir.timings) >= {"init", "apply", "destroy"}
    workdir.close()
    assert not workdir.workdir.exists()
    assert not Path(f"/proc/{provider}").exists(), "the shared provider process outlived the workdir"


def processes_mentioning(words: set[str]) -> list[int]:
    """PIDs (other than this one) whose command line names one of ``words``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(word in cmdline for word in words):
            found.append(int(entry))
    return found
