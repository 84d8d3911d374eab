"""Takeover (module input ``takeover = "peers"``): the surviving NATs cover a dead or hung zone in seconds.

Three zones, each NAT running its watcher (``nat-instance-watch.service``, started by the boot
script once in service) that probes the other NATs through VXLAN tunnels to the emulated internet.
A terminated NAT's replacement boots after a modelled 15 s (half of EC2's launch-to-user-data time,
about 26-29 s on AWS: ``REPLACEMENT_BOOT_DELAY``); until then another zone's NAT must carry the zone.
Real packets throughout: a UDP echo stream from every zone's private workload measures the outage.

One lab, the scenarios in this order on one xdist worker. Compound faults first: a partition
between two healthy NATs, then a survivor dying as it covers. A zone given back to its own NAT is
held down for 120 s in the watchers that saw it (no "not forwarding" takeover of it, against
flapping), so the scenarios that rely on "not forwarding" meet no hold-down of their zones: the
partition comes first, before any give-back, and the hung NAT's zone (us-east-1a) is one that no
scenario before it takes over. The survivor-dies scenario acts on "peer dead", which no hold-down
delays. Each scenario reads only what the watchers logged after it began. The plain terminated-zone
scenario ("peer dead" too) and the Spot handover run in ``test_three_zones.py``'s lab (the same
module configuration), so that the two three-zone labs take about as long on their workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

import pytest

from natlab.lab import first_run
from natlab.lab.lab import Lab
from natlab.lab.partition import dropped_packets, vxlan_partition
from natlab.lab.peer_takeover import (
    REPLACEMENT_BOOT_DELAY,
    TAKEOVER_WAIT,
    covering_zone,
    hang_forwarding,
    log_offsets,
    outage_until,
    streams_for,
    survivor_enis,
    takeover_lines,
    wait_for_watchers,
    watch_log,
    watch_logs_on_failure,
    watcher_pids,
)
from natlab.lab.takeover_checks import (
    decisions_about,
    moved_off,
    recovered_after,
    stays_on_own_nats,
    still_reaching,
    takeovers,
)
from natlab.waiting import wait_until

#: Not a zone an earlier scenario took over: a zone just given back is held down (no "not
#: forwarding" takeover for 120 s, against flapping), which is the rule, not what this scenario is about.
HUNG_ZONE = "us-east-1a"
#: The zone whose watcher is killed to see its unit start it again.
RESTARTED_ZONE = "us-east-1c"
#: The tunnel between these two NATs is cut; the third zone's tunnels and every client flow are not.
PARTITIONED = ("us-east-1a", "us-east-1c")
#: Zone whose NAT is terminated first in the survivor-dies scenario; the survivor that covers it is terminated next.
FIRST_FAILED = "us-east-1b"
#: Watching for a repeat after convergence: 3 misses + the 8 s not-forwarding hold, with room.
REPEAT_WINDOW = 20.0
#: A watcher's last word on a peer it cannot reach: act, leave it to another, or a rule that holds it.
FINAL_DECISION = re.compile(r"rule=\S+ .*(taking over|acts, not this one)|held down|never answered")
pytestmark = pytest.mark.xdist_group("takeover_lab")


def test_the_first_run_summary_shows_what_takeover_needs_of_the_image(three_zone_lab: Lab):
    # On a real account these two lines are the check the lab cannot make (its kernel and curl are the host's).
    run = first_run.collect(three_zone_lab, next(iter(three_zone_lab.zones)))
    assert (run.facts.get("vxlan"), run.facts.get("curl-parallel")) == ("ok", "yes"), run.facts
    assert "| VXLAN link (takeover) | `ok` |" in first_run.render(run)


def test_a_killed_watcher_is_started_again_by_its_unit(three_zone_lab: Lab):
    lab = three_zone_lab
    box = lab.sandbox(lab.current_nat(RESTARTED_ZONE))
    assert box is not None
    wait_until(lambda: watcher_pids(box) or None, what="the watcher process", timeout=30)
    killed = watcher_pids(box)[0]
    starts = watch_log(box).count(" watching ")
    os.kill(killed, signal.SIGKILL)
    # Restart=always, RestartSec=1s (modelled by the lab's systemctl): a new process, watching again.
    wait_until(
        lambda: (watch_log(box).count(" watching ") > starts and killed not in watcher_pids(box)) or None,
        what="the watcher to be started again",
        timeout=15,
    )
    assert watcher_pids(box), "no watcher runs after the restart"


def test_a_partition_between_two_healthy_nats_converges_to_each_zone_on_its_own_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    wait_for_watchers(lab)
    first, second = PARTITIONED
    before = {zone: lab.current_nat(zone) for zone in lab.zones}
    offsets = log_offsets(lab, before)
    seen: dict[str, str] = {}

    def final_word_of_both() -> bool | None:
        # Each partitioned NAT's watcher decides about the other; cached, as a replaced NAT's log goes.
        for me, other in ((first, second), (second, first)):
            for line in decisions_about(lab, before[me], other, offsets[me]):
                if FINAL_DECISION.search(line):
                    seen.setdefault(me, line)
        # A watcher logs "taking over" before it moves the routes: wait for its takeover line too.
        taking = [other for me, other in ((first, second), (second, first)) if "taking over" in seen.get(me, "")]
        done = takeovers(lab, before, tuple(taking), offsets)
        return (len(seen) == 2 and all(done.values())) or None

    with (
        watch_logs_on_failure(lab, list(before.values())),
        lab.watching_closely(),
        contextlib.ExitStack() as stack,
    ):
        streams = streams_for(lab, list(PARTITIONED), stack, rate=50, duration=240)
        cut_at = time.monotonic()
        with vxlan_partition(lab, first, second):
            wait_until(final_word_of_both, what="both partitioned watchers to decide", timeout=TAKEOVER_WAIT + 10)
            acted = {zone: lines for zone, lines in takeovers(lab, before, PARTITIONED, offsets).items() if lines}
            assert len(acted) <= 1, f"at most one zone may be taken over: {acted}"
            replaced = next(iter(acted), None)
            if replaced is not None:
                # The taker marked it unhealthy: its group replaces it, the replacement takes the routes back.
                new = lab.wait_until_serving(replaced, timeout=lab.settings.sla)
                assert new != before[replaced], f"{replaced}'s NAT was taken over but not replaced"
            after = {zone: lab.wait_until_serving(zone, timeout=lab.settings.sla) for zone in lab.zones}
            # Still cut: neither side may act again (the replacement never answered, or the hold-down).
            repeat_from = log_offsets(lab, after)
            stays_on_own_nats(lab, after, REPEAT_WINDOW)
            repeats = takeovers(lab, after, PARTITIONED, repeat_from)
            assert not any(repeats.values()), f"a takeover repeated under the same partition: {repeats}"
            assert dropped_packets(lab) > 0, "the partition dropped no VXLAN packet: was anything cut?"
        still_reaching(streams)
        for stream in streams.values():
            stream.finish()
    recovered = {zone: recovered_after(stream, cut_at) for zone, stream in streams.items()}
    words = "; ".join(f"{zone}'s watcher: {line.split(' decision ', 1)[-1]}" for zone, line in seen.items())
    outcome = f"{words}; " + (
        f"{replaced} taken over and replaced ({before[replaced]} -> {after[replaced]})" if replaced else "no takeover"
    )
    record_fault(
        f"VXLAN cut between {first}'s and {second}'s NATs (both healthy)",
        outcome,
        max(recovered.values()),
        ", ".join(f"{z}: {s.result.lost} datagrams lost" for z, s in streams.items()),
    )
    assert all(seconds <= lab.settings.sla for seconds in recovered.values()), recovered


def test_a_zone_whose_covering_survivor_dies_is_served_again(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    wait_for_watchers(lab)
    before = {zone: lab.current_nat(zone) for zone in lab.zones}
    enis = {zone: lab.primary_eni(instance) for zone, instance in before.items()}
    offsets = log_offsets(lab, before)
    with (
        watch_logs_on_failure(lab, list(before.values())),
        lab.modelled_boot_delay(REPLACEMENT_BOOT_DELAY),
        lab.watching_closely(),
        contextlib.ExitStack() as stack,
    ):
        streams = streams_for(lab, list(lab.zones), stack, rate=50, duration=240)
        fault_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[before[FIRST_FAILED]])
        survivors = {zone: eni for zone, eni in enis.items() if zone != FIRST_FAILED}
        covering = wait_until(
            lambda: covering_zone(lab, FIRST_FAILED, survivors),
            what=f"a survivor's NAT to take {FIRST_FAILED}'s routes",
            timeout=TAKEOVER_WAIT,
        )
        second_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[before[covering]])
        last = next(zone for zone in lab.zones if zone not in (FIRST_FAILED, covering))
        wait_until(
            lambda: covering_zone(lab, covering, {last: enis[last]}),
            what=f"{last}'s NAT to take the dead survivor {covering}'s routes",
            timeout=TAKEOVER_WAIT,
        )
        # ... and the zone that survivor covered, in the same step, long before its own replacement boots.
        carried = wait_until(
            lambda: moved_off(lab, FIRST_FAILED, enis[covering], {last: enis[last]}),
            what=f"{FIRST_FAILED}'s routes to leave the dead survivor {covering}",
            timeout=TAKEOVER_WAIT,
        )
        after = {zone: lab.wait_until_serving(zone, timeout=lab.settings.sla) for zone in lab.zones}
        still_reaching(streams)
        for stream in streams.values():
            stream.finish()
    recovered = {zone: recovered_after(stream, fault_at) for zone, stream in streams.items()}
    record_fault(
        f"terminate {FIRST_FAILED}'s NAT, then {covering}'s while it covers {FIRST_FAILED}",
        f"{last} covered {covering} and {FIRST_FAILED} at once; replacements took both back",
        max(recovered.values()),
        ", ".join(f"{z}: back after {s:.1f} s" for z, s in recovered.items())
        + f"; second fault {second_at - fault_at:.1f} s after the first",
    )
    assert carried == last, f"{FIRST_FAILED}'s routes, covered by the dead {covering}, went to {carried}, not {last}"
    assert all(seconds <= lab.settings.sla for seconds in recovered.values()), recovered
    assert carried == last, f"{FIRST_FAILED}'s routes, covered by the dead {covering}, went to {carried}, not {last}"
    assert after[FIRST_FAILED] != before[FIRST_FAILED] and after[covering] != before[covering], after
    assert after[last] == before[last], f"{last}'s NAT, which never failed, was replaced: {after}"
    lines = takeover_lines(lab, {last: after[last]}, covering, offsets)[last]
    assert lines and "rule=peer-dead" in lines[-1], lines
    # The last NAT's own zone carried on: a few datagrams at most, no outage.
    assert recovered[last] == 0.0, f"{last}'s own clients had an outage: {recovered}"


def test_a_hung_nat_is_covered_and_replaced(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    assert lab.vpc is not None, "this scenario needs the data plane"
    wait_for_watchers(lab)
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != HUNG_ZONE}
    enis = survivor_enis(lab, HUNG_ZONE)
    offsets = log_offsets(lab, survivors)
    hung = lab.current_nat(HUNG_ZONE)
    box = lab.sandbox(hung)
    assert box is not None and box.ns is not None
    with (
        watch_logs_on_failure(lab, [*survivors.values(), hung]),
        lab.watching_closely(),
        lab.vpc.udp_stream(lab.zones[HUNG_ZONE].private_subnet_id, rate=100) as stream,
    ):
        stream.wait_received(10)
        fault_at = time.monotonic()
        hang_forwarding(box)  # running, status checks fine, but it forwards nothing
        covering = wait_until(
            lambda: covering_zone(lab, HUNG_ZONE, enis),
            what=f"a survivor's NAT to take the hung {HUNG_ZONE}'s routes",
            timeout=TAKEOVER_WAIT + 10,  # the not-forwarding hold (8 s) comes on top
        )
        covered_at = time.monotonic()
        new = lab.wait_until_serving(HUNG_ZONE, timeout=lab.settings.sla)
        stream.stop()
    gap = outage_until(stream, fault_at, covered_at).seconds
    record_fault("forwarding stopped in a running, healthy NAT", f"peer-not-forwarding: covered by {covering}", gap)
    assert new != hung, "the hung NAT must be replaced"
    lines = takeover_lines(lab, survivors, HUNG_ZONE, offsets)[covering]
    assert lines and "rule=peer-not-forwarding" in lines[-1], lines
    covering_box = lab.sandbox(survivors[covering])
    assert covering_box is not None
    assert f"marked {hung} unhealthy" in watch_log(covering_box)[offsets[covering] :]
    wait_until(lambda: hung not in lab.group_instances(HUNG_ZONE) or None, what="the hung NAT to go", timeout=60)
