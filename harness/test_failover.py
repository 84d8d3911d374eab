"""The headline promise, end to end: a dead NAT is replaced and the zone's routes follow it within the SLA.

One lab (a Terraform apply of harness/fixtures/vpc_nat in one zone) serves the scenarios of this file in order;
the last one destroys it and checks the emulator holds nothing of the module any more.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from natlab.cloud import moto_fixes
from natlab.lab import first_run
from natlab.lab.failover import FAULTS, run_failover
from natlab.lab.lab import Lab
from natlab.module.userdata import render
from natlab.waiting import wait_until

ZONE = "us-east-1a"
#: The scenarios share one lab, in order, on one xdist worker (and start first: ``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("one_zone_lab")


def test_first_nat_serves_the_zone_from_the_first_apply(one_zone_lab: Lab):
    nat = one_zone_lab.current_nat(ZONE)
    eni = one_zone_lab.primary_eni(nat)
    assert set(one_zone_lab.route_targets(ZONE).values()) == {eni}
    box = one_zone_lab.sandbox(nat)
    assert box is not None and box.exit_code == 0, box.describe() if box else "no sandbox booted"
    etc = box.etc_changes()
    assert "net.ipv4.ip_forward = 1" in (etc.get("sysctl.d/90-nat-instance.conf") or ""), etc
    assert "masquerade" in (etc.get("nftables/nat-instance.nft") or ""), etc
    assert "systemctl enable nftables" in box.shim_calls()
    assert any(r.path.endswith("/api/token") for r in box.imds_requests), "IMDSv2 token was never requested"


def test_first_run_summary_records_what_only_a_real_account_can_answer(one_zone_lab: Lab):
    # On --backend aws this same scenario writes the real account's page (README, first run).
    run = first_run.collect(one_zone_lab, ZONE)
    page = first_run.write(run, one_zone_lab.settings.report_dir)
    assert run.missing_facts == [], page.read_text()
    assert [step.name for step in run.steps][-2:] == ["lifecycle", "facts"], page.read_text()
    assert run.alarm is not None and run.alarm["StateValue"], "the status-check alarm was not created"


def test_instance_ran_the_user_data_terraform_rendered_byte_for_byte(one_zone_lab: Lab):
    lab = one_zone_lab
    zone = lab.zones[ZONE]
    box = lab.sandbox(lab.current_nat(ZONE))
    assert box is not None
    expected = render(
        zone=ZONE,
        asg_name=zone.asg_name,
        route_table_ids=zone.route_table_ids,
        served_cidrs=["10.0.0.0/16"],
        eip_allocation_id=zone.eip_allocation_id,
        lifecycle_hook_name=lab.outputs["lifecycle_hook_name"],
    )
    assert box.original_user_data.decode() == expected


@pytest.mark.parametrize("fault", FAULTS)
def test_route_moves_to_replacement_when_nat_fails(one_zone_lab: Lab, record_failover, fault: str):
    result = run_failover(one_zone_lab, ZONE, fault)
    record_failover(one_zone_lab, result, f"{fault}-nat-1-zone")
    assert result.problems == [], result.summary()
    assert result.new_eni != result.old_eni
    assert result.seconds is not None and result.seconds <= result.sla, result.summary()


def test_packets_flow_before_stop_during_and_flow_after_failover(one_zone_lab: Lab, record_failover):
    if one_zone_lab.vpc is None:
        pytest.skip(f"data plane unavailable: {one_zone_lab.dataplane_skip_reason}")
    before = one_zone_lab.vpc.whoami(one_zone_lab.zones[ZONE].private_subnet_id)
    result = run_failover(one_zone_lab, ZONE, "terminate")
    record_failover(one_zone_lab, result, "terminate-nat-1-zone-dataplane")
    assert result.problems == [], result.summary()
    assert before, "egress did not work before the failover"
    assert result.datagrams_lost and result.datagrams_lost > 0, "no outage seen: was traffic really through the NAT?"
    assert result.outage_seconds is not None and result.outage_seconds <= result.seconds + 1.0, result.summary()
    assert result.egress_address_after is not None
    # The new NAT has no state for an established flow. If the client's retransmission reaches it first,
    # it picks the flow up (nf_conntrack_tcp_loose) and masquerades it keeping the port: with the Elastic
    # IP moved along, the server sees the same address and port and the flow survives. If the server's
    # retransmission arrives first, the new NAT's own stack answers it with a reset. Either way the flow
    # must not be left hanging.
    assert one_zone_lab.zones[ZONE].eip_allocation_id, "this scenario expects the one-zone lab's Elastic IP"
    assert result.tcp_outcome in ("survived", "reset"), result.summary()


def replacing(old: str, new: str):
    """A user-data transform that replaces one piece of the real boot script (and fails if it is gone)."""

    def transform(user_data: bytes) -> bytes:
        text = user_data.decode()
        assert old in text, f"the user data no longer has {old.strip()!r}: update this scenario"
        return text.replace(old, new, 1).encode()

    return transform


def chained(*transforms):
    def transform(user_data: bytes) -> bytes:
        for one in transforms:
            user_data = one(user_data)
        return user_data

    return transform


REFUSED_TABLE = "rtb-0000000000000dead"
AFTER_COMMIT_FAULTS = {
    # complete-lifecycle-action refused once (throttling, say): retried, the NAT goes in service.
    "lifecycle-refused-once": replacing(
        "    lifecycle_action CONTINUE && return 0\n", "    ((attempt > 1)) && lifecycle_action CONTINUE && return 0\n"
    ),
    # A route table the instance cannot take over, beside the zone's own: the zone is served anyway.
    "one-route-table-refused": replacing("NAT_ROUTE_TABLE_IDS='", f"NAT_ROUTE_TABLE_IDS='{REFUSED_TABLE} "),
}
EXPECTED_LOG = {
    "lifecycle-refused-once": ["complete-lifecycle-action failed (attempt 1 of 3)"],
    "one-route-table-refused": [
        f"replace-route in {REFUSED_TABLE} failed: ",
        f"serving the zone without {REFUSED_TABLE}",
    ],
}


@pytest.mark.parametrize("fault", AFTER_COMMIT_FAULTS)
def test_a_failure_after_the_routes_moved_leaves_the_zone_served(one_zone_lab: Lab, fault: str):
    lab = one_zone_lab
    with lab.sabotaged(AFTER_COMMIT_FAULTS[fault]):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    assert result.problems == [], result.summary()
    box = lab.sandbox(result.new_instance)
    assert box is not None
    for line in EXPECTED_LOG[fault]:
        assert line in box.boot_log(), box.describe()
    assert [a.result for a in moto_fixes.LIFECYCLE.actions(result.new_instance)][-1] == "CONTINUE"


def test_a_lifecycle_call_that_keeps_failing_never_abandons_the_serving_nat(one_zone_lab: Lab):
    lab = one_zone_lab
    refused_for_good = chained(
        replacing("    lifecycle_action CONTINUE && return 0\n", "    false && return 0\n"),
        replacing('    sleep "$((attempt * 2))"\n', "    sleep 0\n"),
    )
    with lab.sabotaged(refused_for_good):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    box = lab.sandbox(result.new_instance)
    assert box is not None and box.exit_code not in (None, 0), box.describe() if box else result.summary()
    assert set(lab.route_targets(ZONE).values()) == {result.new_eni}, result.summary()
    assert "staying in service" in box.boot_log(), box.describe()
    assert "ABANDON" not in [a.result for a in moto_fixes.LIFECYCLE.actions(result.new_instance)]
    # Only the hook's timeout (not modelled in this lab) would end it; the InService check says so.
    assert all("InService" in problem for problem in result.problems), result.summary()
    # Hand the zone to a healthy NAT for the scenarios that follow.
    lab.ec2.terminate_instances(InstanceIds=[result.new_instance])
    lab.wait_until_serving(ZONE, timeout=lab.settings.sla)


def test_instance_refresh_keeps_the_old_nat_until_the_new_one_serves(one_zone_lab: Lab):
    lab = one_zone_lab
    assert lab.controller is not None, "instance refresh is emulated by the lab's ASG controller"
    old = lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
    zone = lab.zones[ZONE]
    # First a refresh whose new NAT cannot move any route: it hands the Elastic IP back and abandons.
    with lab.sabotaged(replacing("NAT_ROUTE_TABLE_IDS='", f"NAT_ROUTE_TABLE_IDS='{REFUSED_TABLE}' #")):
        started = time.time()
        lab.controller.start_instance_refresh(zone.asg_name)
        abandoned = wait_until(
            lambda: next(
                (a for a in moto_fixes.LIFECYCLE.actions() if a.result == "ABANDON" and a.at >= started), None
            ),
            what="the sabotaged new NAT abandoning its launch",
            timeout=lab.settings.sla,
        )
    box = lab.sandbox(abandoned.instance_id)
    assert box is not None and "handed back to" in box.boot_log(), box.describe() if box else "no sandbox"
    old_eni = lab.primary_eni(old)
    assert set(lab.route_targets(ZONE).values()) == {old_eni}, "the old NAT must keep its routes"
    address = lab.ec2.describe_addresses(AllocationIds=[zone.eip_allocation_id])["Addresses"][0]
    assert address.get("NetworkInterfaceId") == old_eni, "the old NAT must keep its Elastic IP"
    # The refresh goes on: the next new NAT boots unsabotaged, takes over, and only then the old one goes.
    controller = lab.controller
    with contextlib.ExitStack() as traffic:
        stream = traffic.enter_context(lab.vpc.udp_stream(zone.private_subnet_id, rate=100)) if lab.vpc else None
        wait_until(lambda: not controller.refreshing(zone.asg_name), what="the refresh", timeout=lab.settings.sla)
        new = lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
        if lab.vpc is not None and stream is not None:
            assert lab.vpc.whoami(zone.private_subnet_id), "no egress through the refreshed NAT"
            stream.stop()
    if stream is not None:
        gaps = [g for g in stream.result.gaps() if g.end != float("inf")]
        lost = sum(g.lost for g in gaps)
        outage = max((g.end for g in gaps), default=0.0) - min((g.start for g in gaps), default=0.0)
        print(f"instance refresh: {lost} datagrams lost, data-plane outage {outage:.3f} s")
        assert outage <= lab.settings.sla, f"refresh outage {outage:.1f} s exceeds the SLA"
    assert new != old
    address = lab.ec2.describe_addresses(AllocationIds=[zone.eip_allocation_id])["Addresses"][0]
    assert address.get("NetworkInterfaceId") == lab.primary_eni(new)


BROKEN_STEPS = {
    "skips-routes": "  step routes point_routes\n",
    "keeps-source-dest-check": "  step source-dest-check disable_source_dest_check\n",
    "forgets-masquerade": "  step masquerade configure_masquerade\n",
}


def without_step(line: str):
    """A user-data transform that deletes one step of the real boot script (and fails if it is gone)."""

    def transform(user_data: bytes) -> bytes:
        text = user_data.decode()
        assert line in text, f"the boot script no longer has {line.strip()!r}: update BROKEN_STEPS"
        return text.replace(line, "").encode()

    return transform


@pytest.mark.parametrize("broken", BROKEN_STEPS)
def test_failover_check_fails_for_a_broken_boot_script(one_zone_lab: Lab, broken: str):
    lab = one_zone_lab
    if broken == "forgets-masquerade" and lab.vpc is None:
        pytest.skip(f"only real packets can tell a missing masquerade: {lab.dataplane_skip_reason}")
    # No traffic through the fault: the NAT it replaces may be the previous check's broken one.
    with lab.sabotaged(without_step(BROKEN_STEPS[broken])):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    expected = {
        "skips-routes": ["still target"],
        # The control plane sees the flag; real packets are dropped by the emulated VPC as EC2 would.
        "keeps-source-dest-check": ["source/dest check is still on"] + (["egress from"] if lab.vpc else []),
        "forgets-masquerade": ["egress from"],
    }[broken]
    for problem in expected:
        assert any(problem in found for found in result.problems), f"{problem!r} not reported:\n{result.summary()}"
    assert result.new_instance and lab.ran_sabotaged_user_data(result.new_instance), result.summary()


def test_second_plan_is_empty_after_failover(one_zone_lab: Lab):
    assert one_zone_lab.terraform.has_changes() is False, one_zone_lab.terraform.transcript(last=1)


def test_destroy_removes_everything_the_module_created(one_zone_lab: Lab):
    lab = one_zone_lab
    names = list(lab.outputs["autoscaling_group_names"].values())
    alarms = list(lab.outputs["status_check_alarm_names"].values())
    roles = set(lab.outputs["iam_role_names"].values())
    lab.destroy()
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
    }
    assert {kind: found for kind, found in left.items() if found} == {}
