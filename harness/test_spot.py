"""Spot (module input ``purchase_option = "spot"``): an interrupted NAT hands its zone over first.

Three zones with takeover on (the lab of ``harness/test_takeover.py``). EC2's two-minute
interruption notice appears in one NAT's IMDS (scaled to 12 s: ``natlab.lab.spot``); its watcher
reads it within its 5 s check and points the zone's routes at the NAT of the zone that would act
for it, while it still forwards. EC2 then terminates it, and the zone's replacement (booting after
a modelled 30 s) takes the routes back. A UDP echo stream from every zone's private workload counts
what each move cost. The lab runs on-demand groups (moto has no Spot market): what is checked is
the NATs' part, the same whatever bought the instance.
"""

from __future__ import annotations

import pytest

from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import takeover_lines, wait_for_watchers, watch_log, watch_logs_on_failure
from natlab.lab.spot_handover import run_interruption
from natlab.waiting import wait_until

INTERRUPTED_ZONE = "us-east-1c"
#: successor_of: the next zone in sorted order (wrapping) whose NAT the watcher sees alive.
SUCCESSOR_ZONE = "us-east-1a"
#: Launch to user data start of the replacement (as in harness/test_takeover.py: estimate 30 s).
REPLACEMENT_BOOT_DELAY = 30.0
#: The longest gap a route move may make in the lab with both NATs up: a switch, not an outage (an
#: interruption without handover leaves the zone without egress for the replacement's whole boot).
#: In bench/spot_handover.py (7 runs at 100 datagrams/s) the zone lost 0-14 datagrams in all, in at
#: most one gap of up to 0.14 s; every gap that was placed fell at the give-back (the replacement's
#: ordinary boot route step), none at the handover.
ROUTE_SWITCH_SECONDS = 0.25
#: Datagrams the handover itself (notice to termination) may cost: one now and then on a loaded machine.
HANDOVER_DATAGRAMS = 3
pytestmark = pytest.mark.xdist_group("takeover_lab")


def test_a_spot_notice_hands_the_zone_over_before_ec2_takes_the_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    wait_for_watchers(lab)
    old = lab.current_nat(INTERRUPTED_ZONE)
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != INTERRUPTED_ZONE}
    with watch_logs_on_failure(lab, [*survivors.values(), old]):
        run = run_interruption(lab, INTERRUPTED_ZONE, REPLACEMENT_BOOT_DELAY)
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
    acted = {zone: lines for zone, lines in takeover_lines(lab, survivors, INTERRUPTED_ZONE).items() if lines}
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
        lambda: f"give-back zone={INTERRUPTED_ZONE}" in watch_log(covering_box) or None,
        what=f"{run.covering}'s watcher to notice the give-back",
        timeout=30,
    )
