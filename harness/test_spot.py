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

import contextlib
import time

import pytest

from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import (
    covering_zone,
    streams_for,
    survivor_enis,
    takeover_lines,
    wait_for_watchers,
    watch_log,
    watch_logs_on_failure,
)
from natlab.waiting import wait_until

INTERRUPTED_ZONE = "us-east-1c"
#: successor_of: the next zone in sorted order (wrapping) whose NAT the watcher sees alive.
SUCCESSOR_ZONE = "us-east-1a"
#: Launch to user data start of the replacement (as in harness/test_takeover.py: estimate 30 s).
REPLACEMENT_BOOT_DELAY = 30.0
#: Datagrams a route move may cost in the lab, both NATs up: the router's 50 ms sync at 100 per
#: second is 5 in flight; a move that took a datagram more would be an outage, not a switch.
ONE_SWITCH_DATAGRAMS = 5
pytestmark = pytest.mark.xdist_group("takeover_lab")


def test_a_spot_notice_hands_the_zone_over_before_ec2_takes_the_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    wait_for_watchers(lab)
    old = lab.current_nat(INTERRUPTED_ZONE)
    enis = survivor_enis(lab, INTERRUPTED_ZONE)
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != INTERRUPTED_ZONE}
    with (
        watch_logs_on_failure(lab, [*survivors.values(), old]),
        lab.modelled_boot_delay(REPLACEMENT_BOOT_DELAY),
        lab.watching_closely(),
        contextlib.ExitStack() as stack,
    ):
        streams = streams_for(lab, list(lab.zones), stack, rate=100, duration=120)
        with lab.interrupt_spot(INTERRUPTED_ZONE) as notice:
            covering = wait_until(
                lambda: covering_zone(lab, INTERRUPTED_ZONE, enis),
                what=f"{INTERRUPTED_ZONE}'s NAT to hand its routes over",
                timeout=notice.period + 5,
            )
            handed_at = time.monotonic()
            notice.wait_terminated(timeout=notice.period + 5)
        new = lab.wait_until_serving(INTERRUPTED_ZONE, timeout=lab.settings.sla)
        given_back_at = time.monotonic()
        for stream in streams.values():
            stream.stop()
    # Gaps that closed (the last datagrams in flight when a stream stops are not an outage).
    gaps = {zone: [g for g in streams[zone].result.gaps() if g.end != float("inf")] for zone in lab.zones}
    lost = {zone: sum(g.lost for g in zone_gaps) for zone, zone_gaps in gaps.items()}
    longest = max((g.end - g.start for g in gaps[INTERRUPTED_ZONE]), default=0.0)
    record_fault(
        f"spot interruption notice in {INTERRUPTED_ZONE} ({notice.period:.0f} s, AWS 120 s), then termination",
        f"handed to {covering} {handed_at - notice.noticed_at:.1f} s after the notice, given back to {new}",
        longest,
        f"{lost[INTERRUPTED_ZONE]} datagrams lost in {INTERRUPTED_ZONE} (handover, termination, give-back), "
        f"{sum(lost.values()) - lost[INTERRUPTED_ZONE]} in the other zones",
    )
    assert covering == SUCCESSOR_ZONE, f"the routes went to {covering}, not to the successor {SUCCESSOR_ZONE}"
    assert handed_at < notice.terminates_at, "the routes moved only after EC2 took the NAT"
    assert new != old and given_back_at > (notice.terminated_at or 0)
    old_box = lab.sandbox(old)
    handover = [line for line in watch_log(old_box).splitlines() if "handover zone=" in line] if old_box else []
    assert len(handover) == 1 and f"rule=spot-interruption to={enis[covering]}" in handover[0], handover
    # Nobody had to take the zone over: it was handed over, and the terminated NAT no longer served it.
    acted = {zone: lines for zone, lines in takeover_lines(lab, survivors, INTERRUPTED_ZONE).items() if lines}
    assert acted == {}, f"a survivor took over a zone that was handed over: {acted}"
    # Two route moves (handover, give-back), both NATs up each time: at most a switch's worth each.
    assert lost[INTERRUPTED_ZONE] <= 2 * ONE_SWITCH_DATAGRAMS, gaps[INTERRUPTED_ZONE]
    assert all(lost[zone] <= 3 for zone in survivors), f"the other zones lost datagrams: {lost}"
    # The lab is left as it was found: every zone served by a NAT of its own.
    for zone in lab.zones:
        lab.wait_until_serving(zone, timeout=5)
    covering_box = lab.sandbox(survivors[covering])
    assert covering_box is not None
    wait_until(
        lambda: f"give-back zone={INTERRUPTED_ZONE}" in watch_log(covering_box) or None,
        what=f"{covering}'s watcher to notice the give-back",
        timeout=30,
    )
