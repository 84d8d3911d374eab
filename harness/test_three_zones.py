"""Three zones, three NATs: killing one zone's NAT heals that zone and leaves the others alone.

The same lab also serves the commit-point and instance-refresh scenarios in its first zone (every
failover there checks that the other two zones keep their routes); they run here rather than in
the one-zone lab to balance the two xdist workers. So does takeover's terminated-zone scenario (the
module runs with ``takeover = "peers"`` here too; its survivors act on "peer dead", which no
earlier give-back holds down) and the Spot handover (a notice, not a judgement: no hold-down applies):
``test_takeover.py``'s lab is the longer one. The second plan comes last, after all of them.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from natlab.cloud import moto_fixes
from natlab.cloud.zone_outages import ZONES
from natlab.lab.failover import run_failover
from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import (
    REPLACEMENT_BOOT_DELAY,
    TAKEOVER_WAIT,
    covering_zone,
    log_offsets,
    outage_until,
    streams_for,
    survivor_enis,
    takeover_lines,
    wait_for_watchers,
    watch_log,
    watch_logs_on_failure,
)
from natlab.lab.reboot import reboot_nat
from natlab.lab.spot_handover import run_interruption
from natlab.lab.zone_loss import watch_routes, zone_lost
from natlab.waiting import wait_until

FAILED_ZONE = "us-east-1b"
#: The reboot scenario's zone: its NAT is the one the first apply launched.
REBOOTED_ZONE = "us-east-1c"
#: The commit-point and refresh scenarios' zone.
ZONE = "us-east-1a"
#: The scenarios share one lab, in order, on one xdist worker (``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("three_zone_lab")
#: Spot (module input purchase_option = "spot"): the zone whose NAT gets the interruption notice.
INTERRUPTED_ZONE = "us-east-1c"
#: successor_of: the next zone in sorted order (wrapping) whose NAT the watcher sees alive.
SUCCESSOR_ZONE = "us-east-1a"
#: The longest gap a route move may make in the lab with both NATs up: a switch, not an outage (an
#: interruption without handover leaves the zone without egress for the replacement's whole boot).
#: In bench/spot_handover.py (7 runs at 100 datagrams/s) the zone lost 0-14 datagrams in all, in at
#: most one gap of up to 0.14 s; every gap that was placed fell at the give-back (the replacement's
#: ordinary boot route step), none at the handover.
ROUTE_SWITCH_SECONDS = 0.25
#: Datagrams the handover itself (notice to termination) may cost: one now and then on a loaded machine.
HANDOVER_DATAGRAMS = 3


def test_killing_one_zones_nat_leaves_other_zones_untouched(three_zone_lab: Lab, record_failover):
    lab = three_zone_lab
    others = [zone for zone in lab.zones if zone != FAILED_ZONE]
    nats_before = {zone: lab.current_nat(zone) for zone in others}
    with contextlib.ExitStack() as stack:
        streams = {}
        if lab.vpc is not None:
            for zone in others:
                subnet = lab.zones[zone].private_subnet_id
                streams[zone] = stack.enter_context(lab.vpc.udp_stream(subnet, rate=100, duration=60))
                streams[zone].wait_received(10)
        result = run_failover(lab, FAILED_ZONE, "terminate")
        for stream in streams.values():
            stream.finish()  # the echoes still in flight are waited for, not cut off
    record_failover(lab, result, "terminate-nat-3-zones")
    assert result.problems == [], result.summary()  # includes: other zones' routes unchanged
    assert result.seconds is not None and result.seconds <= result.sla
    assert {zone: lab.current_nat(zone) for zone in others} == nats_before
    lost = {zone: stream.result.lost for zone, stream in streams.items()}
    assert lost == dict.fromkeys(streams, 0), f"other zones lost datagrams: {lost}"


#: Launches the lost zone's group must have tried (and failed) before the zone comes back.
REFUSED_LAUNCHES = 3


def test_a_whole_zone_lost_costs_the_other_zones_not_one_datagram(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    if lab.vpc is None:
        pytest.skip(f"data plane unavailable: {lab.dataplane_skip_reason}")
    vpc, lost = lab.vpc, lab.zones[FAILED_ZONE]
    others = [zone for zone in lab.zones if zone != FAILED_ZONE]
    nats_before = {zone: lab.current_nat(zone) for zone in others}
    with lab.watching_closely(), watch_routes(lab, others) as routes, contextlib.ExitStack() as traffic:
        streams = {
            zone: traffic.enter_context(vpc.udp_stream(lab.zones[zone].private_subnet_id, duration=120, late=1.0))
            for zone in others
        }
        for stream in streams.values():
            stream.wait_received(10)
        with zone_lost(lab, FAILED_ZONE) as loss:
            refused = wait_until(
                lambda: len(ZONES.refused_since(lost.asg_name, loss.lost_wall)) >= REFUSED_LAUNCHES,
                what=f"{REFUSED_LAUNCHES} launches refused in the lost zone",
                timeout=lab.settings.sla,
            )
            assert refused and lab.group_instances(FAILED_ZONE) == {}, "a lost zone launches nothing"
        served_by = lab.wait_until_serving(FAILED_ZONE, timeout=lab.settings.sla)
        recovered = time.monotonic() - (loss.back_at or 0.0)
        egress = vpc.whoami(lost.private_subnet_id)
        for stream in streams.values():
            stream.finish()  # the echoes still in flight are waited for, not cut off
    sent = {zone: len(stream.result.sent) for zone, stream in streams.items()}
    dropped = {zone: stream.result.lost for zone, stream in streams.items()}
    tries = len(ZONES.refused_since(lost.asg_name, loss.lost_wall))
    record_fault(
        f"{FAILED_ZONE} lost: its NAT terminated and no launch possible there until it is back; "
        f"a UDP stream (100/s) in each other zone",
        f"other zones lost {sum(dropped.values())} of {sum(sent.values())} datagrams, routes unchanged; "
        f"{FAILED_ZONE} served again by {served_by} once back",
        recovered,
        f"{tries} launches refused while down; recovery counted from the zone's return",
        {"datagrams sent": sum(sent.values()), "datagrams lost": sum(dropped.values()), "launches refused": tries},
    )
    assert routes.reads > 0 and routes.changes == [], routes.changes
    assert {zone: lab.current_nat(zone) for zone in others} == nats_before
    assert all(sent.values()) and dropped == dict.fromkeys(others, 0), f"sent {sent}, lost {dropped}"
    assert served_by != loss.nat and egress, "the lost zone must be served by a new NAT"


def test_a_rebooted_nat_serves_again_from_its_persisted_config(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    if lab.vpc is None:
        pytest.skip(f"only real packets tell forwarding and masquerade came back: {lab.dataplane_skip_reason}")
    result = reboot_nat(lab, REBOOTED_ZONE)
    # The same instance serves again: Auto Scaling replaced nothing, no route ever moved.
    assert result.group_after == result.group_before == {result.instance_id: "InService"}, result.summary()
    assert result.route_targets_seen == {result.eni}, result.summary()
    # Its kernel state went and came back from the persisted unit, not from user data.
    box = result.box
    assert box is not None and box.started_again and box.exit_code == 0, result.summary()
    modes = [line.message.split()[-1] for line in box.log_lines() if line.message.startswith("boot mode ")]
    assert modes == ["first-boot", "start"], box.boot_log()
    start = box.boot_log().split("boot mode start", 1)[1]
    assert "step=forwarding done" in start and "step=masquerade done" in start, box.boot_log()
    assert f"routes already point at {result.eni}" in start, box.boot_log()
    assert "rebooted" in [e.kind for e in lab.fleet.events if e.instance_id == result.instance_id]
    assert result.egress_address == result.public_ip, result.summary()
    assert result.datagrams_lost, f"no outage seen: was the stream really through the NAT?\n{result.summary()}"
    assert result.outage_seconds is not None and result.outage_seconds <= lab.settings.sla, result.summary()
    print(f"reboot: {result.datagrams_lost} datagrams lost, outage {result.outage_seconds:.3f} s")
    record_fault(
        "RebootInstances on the serving NAT (reboot modelled as "
        f"{lab.fleet.reboot_seconds:.2f} s), UDP stream through it",
        "same instance serves again: forwarding and masquerade from the persisted unit, routes never moved",
        result.outage_seconds,
        f"{result.datagrams_lost} datagrams lost; unit ran {result.seconds:.2f} s after the call",
    )


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
def test_a_failure_after_the_routes_moved_leaves_the_zone_served(three_zone_lab: Lab, record_fault, fault: str):
    lab = three_zone_lab
    with lab.sabotaged(AFTER_COMMIT_FAULTS[fault]):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    assert result.problems == [], result.summary()
    box = lab.sandbox(result.new_instance)
    assert box is not None
    for line in EXPECTED_LOG[fault]:
        assert line in box.boot_log(), box.describe()
    assert [a.result for a in moto_fixes.LIFECYCLE.actions(result.new_instance)][-1] == "CONTINUE"
    record_fault(f"{fault} after the routes moved", "zone served, launch completed", result.seconds)


def test_a_lifecycle_call_that_keeps_failing_never_abandons_the_serving_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
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
    record_fault("complete-lifecycle-action refused for good", "zone served, never abandoned", result.seconds)
    # Hand the zone to a healthy NAT for the scenarios that follow.
    lab.ec2.terminate_instances(InstanceIds=[result.new_instance])
    lab.wait_until_serving(ZONE, timeout=lab.settings.sla)


def test_instance_refresh_keeps_the_old_nat_until_the_new_one_serves(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
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
    record_fault("instance refresh, new NAT cannot move a route", "abandoned; old NAT keeps routes and EIP")
    # The refresh goes on: the next new NAT boots unsabotaged, takes over, and only then the old one goes.
    controller = lab.controller
    with lab.watching_closely(), contextlib.ExitStack() as traffic:  # the router at full speed, as in a failover
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
        record_fault("instance refresh", "new NAT serves before the old goes", outage, f"{lost} datagrams lost")
        assert outage <= lab.settings.sla, f"refresh outage {outage:.1f} s exceeds the SLA"
    assert new != old
    address = lab.ec2.describe_addresses(AllocationIds=[zone.eip_allocation_id])["Addresses"][0]
    assert address.get("NetworkInterfaceId") == lab.primary_eni(new)


def test_a_survivor_covers_a_terminated_zone_until_its_replacement_boots(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    wait_for_watchers(lab)
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != FAILED_ZONE}
    enis = survivor_enis(lab, FAILED_ZONE)
    offsets = log_offsets(lab, survivors)
    old = lab.current_nat(FAILED_ZONE)
    with (
        watch_logs_on_failure(lab, [*survivors.values(), old]),
        lab.modelled_boot_delay(REPLACEMENT_BOOT_DELAY),
        lab.watching_closely(),
        contextlib.ExitStack() as stack,
    ):
        streams = streams_for(lab, list(lab.zones), stack, rate=100, duration=120)
        fault_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[old])
        covering = wait_until(
            lambda: covering_zone(lab, FAILED_ZONE, enis),
            what=f"a survivor's NAT to take {FAILED_ZONE}'s routes",
            timeout=TAKEOVER_WAIT,
        )
        covered_at = time.monotonic()
        new = lab.wait_until_serving(FAILED_ZONE, timeout=lab.settings.sla)
        given_back_at = time.monotonic()
        for stream in streams.values():
            stream.stop()
    outage = outage_until(streams[FAILED_ZONE], fault_at, covered_at)
    gap, gap_end, lost = outage.seconds, outage.end, outage.lost
    record_fault(
        f"terminate {FAILED_ZONE}'s NAT, replacement boots after {REPLACEMENT_BOOT_DELAY:.0f} s",
        f"covered by {covering}, given back to {new}",
        gap,
        f"{lost} datagrams lost until covered, {streams[FAILED_ZONE].result.lost} in all (give-back included)",
    )
    # Egress came back through the survivor, before the replacement could have served the zone.
    assert gap <= lab.settings.sla
    assert gap_end < given_back_at, f"the outage ({gap:.1f} s) lasted until the replacement took the routes"
    assert new != old
    acted = {zone: lines for zone, lines in takeover_lines(lab, survivors, FAILED_ZONE, offsets).items() if lines}
    assert list(acted) == [covering], f"exactly one survivor must act: {acted}"
    assert "rule=peer-dead" in acted[covering][0], acted
    # Datagrams lost in the survivors' own zones, in gaps that closed (the last few in flight when a
    # stream stops are not an outage); one lost now and then is the loaded machine, an outage is hundreds.
    lost = {zone: [g.lost for g in streams[zone].result.gaps() if g.end != float("inf")] for zone in survivors}
    assert all(sum(counts) <= 3 for counts in lost.values()), f"the survivors' own zones lost datagrams: {lost}"
    covering_box = lab.sandbox(survivors[covering])
    assert covering_box is not None
    wait_until(
        lambda: f"give-back zone={FAILED_ZONE}" in watch_log(covering_box) or None,
        what=f"{covering}'s watcher to notice the give-back",
        timeout=30,
    )


# The Spot notice (EC2's two-minute warning, scaled: natlab.lab.spot) in zone c, handed to a: a takeover
# scenario, here to balance the two three-zone labs' workers.
def test_a_spot_notice_hands_the_zone_over_before_ec2_takes_the_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    wait_for_watchers(lab)
    old = lab.current_nat(INTERRUPTED_ZONE)
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != INTERRUPTED_ZONE}
    offsets = log_offsets(lab, survivors)
    with watch_logs_on_failure(lab, [*survivors.values(), old]):
        # The replacement boots without the modelled delay: what is checked happens before the
        # termination (bench/spot_handover.py models a 30 s boot for the zone's whole outage figure).
        run = run_interruption(lab, INTERRUPTED_ZONE, lab.settings.boot_delay)
    others = sum(run.lost(zone) for zone in survivors)
    record_fault(
        f"spot interruption notice in {run.zone} ({run.notice_period_s:.0f} s, AWS 120 s), then termination",
        f"handed to {run.covering} {run.notice_to_handover_s:.1f} s after the notice, given back to {run.new}",
        run.longest_gap_s(run.zone),
        f"{run.lost(run.zone)} datagrams lost in {run.zone} (handover, termination, give-back), {others} in the others",
    )
    assert run.covering == SUCCESSOR_ZONE, f"the routes went to {run.covering}, not to the successor {SUCCESSOR_ZONE}"
    assert run.handed_before_termination, "the routes moved only after EC2 took the NAT"
    assert run.new != old
    old_box = lab.sandbox(old)
    handover = [line for line in watch_log(old_box).splitlines() if "handover zone=" in line] if old_box else []
    assert len(handover) == 1 and f"rule=spot-interruption to={run.covering_eni}" in handover[0], handover
    # Nobody had to take the zone over: it was handed over, and the terminated NAT no longer served it.
    acted = {zone: lines for zone, lines in takeover_lines(lab, survivors, INTERRUPTED_ZONE, offsets).items() if lines}
    assert acted == {}, f"a survivor took over a zone that was handed over: {acted}"
    # Two route moves (handover, give-back), both NATs up each time: at most a switch each, no outage.
    before_termination = [g for g in run.gaps[run.zone] if g.start < run.moments["termination"]]
    assert sum(g.lost for g in before_termination) <= HANDOVER_DATAGRAMS, run.gap_report(run.zone)
    assert len(run.gaps[run.zone]) <= 2, run.gap_report(run.zone)
    assert run.longest_gap_s(run.zone) <= ROUTE_SWITCH_SECONDS, run.gap_report(run.zone)
    assert all(run.lost(zone) <= 3 for zone in survivors), f"the other zones lost datagrams: {run.gaps}"
    # The lab is left as it was found: every zone served by a NAT of its own.
    for zone in lab.zones:
        lab.wait_until_serving(zone, timeout=5)
    covering_box = lab.sandbox(survivors[run.covering])
    assert covering_box is not None
    wait_until(
        lambda: f"give-back zone={INTERRUPTED_ZONE}" in watch_log(covering_box)[offsets[run.covering] :] or None,
        what=f"{run.covering}'s watcher to notice the give-back",
        timeout=30,
    )


def test_second_plan_is_empty_after_failover_in_three_zones(three_zone_lab: Lab):
    assert three_zone_lab.terraform.has_changes() is False, three_zone_lab.terraform.transcript(last=1)
