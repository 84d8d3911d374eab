"""Takeover under compound faults: a partition between two healthy NATs, a survivor dying as it covers.

Same three-zone lab as ``test_takeover.py`` (module input ``takeover = "peers"``), a lab of its own so
that the other scenarios' give-backs (each starts a 120 s hold-down) do not decide the outcome here.
Real packets: a UDP echo stream from each zone's private workload measures what its clients saw.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest

from natlab.cloud.probes import UdpStream
from natlab.lab.lab import Lab
from natlab.lab.partition import dropped_packets, vxlan_partition
from natlab.lab.peer_takeover import (
    covering_zone,
    streams_for,
    takeover_lines,
    wait_for_watchers,
    watch_log,
    watch_logs_on_failure,
)
from natlab.waiting import wait_until

#: Launch to user data start of a replacement (as in test_takeover.py: AWS ~26-29 s; estimate 30 s).
REPLACEMENT_BOOT_DELAY = 30.0
#: A wait bound for the survivors to move routes (probes + the API confirm), not a measured figure.
TAKEOVER_WAIT = 20.0
#: The tunnel between these two NATs is cut; the third zone's tunnels and every client flow are not.
PARTITIONED = ("us-east-1a", "us-east-1c")
#: Zone whose NAT is terminated first; the survivor that covers it is terminated next.
FIRST_FAILED = "us-east-1b"
#: Watching for a repeat after convergence: 3 misses + the 8 s not-forwarding hold, with room.
REPEAT_WINDOW = 20.0
#: A gap of fewer datagrams is the loaded machine, not an outage (50 a second: 100 ms).
OUTAGE_MIN_LOST = 5
#: A watcher's last word on a peer it cannot reach: act, leave it to another, or a rule that holds it.
FINAL_DECISION = re.compile(r"rule=\S+ .*(taking over|acts, not this one)|held down|never answered")
pytestmark = pytest.mark.xdist_group("takeover_compound_lab")


def still_reaching(streams: dict[str, UdpStream]) -> None:
    """Each stream gets echoes now: its zone's clients reach the internet."""
    for zone, stream in streams.items():
        received = len(stream.result.received)
        with_zone = f"{zone}: no echo after the fault"
        try:
            stream.wait_received(received + 10, timeout=10)
        except TimeoutError as error:
            raise AssertionError(with_zone) from error


def recovered_after(stream: UdpStream, fault_at: float) -> float:
    """Seconds from the fault to the end of the last outage (gap of OUTAGE_MIN_LOST or more); 0 if none."""
    gaps = [g for g in stream.result.gaps() if g.start >= fault_at - 0.05 and g.lost >= OUTAGE_MIN_LOST]
    assert all(g.end != float("inf") for g in gaps), f"an outage never ended: {gaps[-1]}"
    return max((g.end - fault_at for g in gaps), default=0.0)


def decisions_about(lab: Lab, instance: str, zone: str, since: int) -> list[str]:
    """Decision lines of ``instance``'s watcher about ``zone`` logged after offset ``since``."""
    box = lab.sandbox(instance)
    text = watch_log(box)[since:] if box is not None else ""
    return [line for line in text.splitlines() if f"decision zone={zone} " in line]


def test_a_partition_between_two_healthy_nats_converges_to_each_zone_on_its_own_nat(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    wait_for_watchers(lab)
    first, second = PARTITIONED
    before = {zone: lab.current_nat(zone) for zone in lab.zones}
    offsets = {zone: len(watch_log(lab.sandbox(i))) for zone, i in before.items()}  # type: ignore[arg-type]
    seen: dict[str, str] = {}

    def final_word_of_both() -> bool | None:
        # Each partitioned NAT's watcher decides about the other; cached, as a replaced NAT's log goes.
        for me, other in ((first, second), (second, first)):
            for line in decisions_about(lab, before[me], other, offsets[me]):
                if FINAL_DECISION.search(line):
                    seen.setdefault(me, line)
        return len(seen) == 2 or None

    with (
        watch_logs_on_failure(lab, list(before.values())),
        lab.watching_closely(),
        contextlib.ExitStack() as stack,
    ):
        streams = streams_for(lab, list(PARTITIONED), stack, rate=50, duration=240)
        cut_at = time.monotonic()
        with vxlan_partition(lab, first, second):
            wait_until(final_word_of_both, what="both partitioned watchers to decide", timeout=TAKEOVER_WAIT + 10)
            acted = {zone: lines for zone, lines in _takeovers(lab, before, PARTITIONED).items() if lines}
            assert len(acted) <= 1, f"at most one zone may be taken over: {acted}"
            replaced = next(iter(acted), None)
            if replaced is not None:
                # The taker marked it unhealthy: its group replaces it, the replacement takes the routes back.
                new = lab.wait_until_serving(replaced, timeout=lab.settings.sla)
                assert new != before[replaced], f"{replaced}'s NAT was taken over but not replaced"
            after = {zone: lab.wait_until_serving(zone, timeout=lab.settings.sla) for zone in lab.zones}
            # Still cut: neither side may act again (the replacement never answered, or the hold-down).
            repeat_from = {zone: len(watch_log(lab.sandbox(i))) for zone, i in after.items()}  # type: ignore[arg-type]
            _stays_on_own_nats(lab, after, REPEAT_WINDOW)
            repeats = _takeovers(lab, after, PARTITIONED, repeat_from)
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


def _takeovers(
    lab: Lab, nats: dict[str, str], zones: tuple[str, ...], since: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """Per zone of ``zones``: the takeover lines about it in every watcher of ``nats`` (after ``since``)."""
    found: dict[str, list[str]] = {}
    for zone in zones:
        lines: list[str] = []
        for other, instance in nats.items():
            box = lab.sandbox(instance)
            text = watch_log(box)[(since or {}).get(other, 0) :] if box is not None else ""
            lines += [line for line in text.splitlines() if f"takeover zone={zone} " in line]
        found[zone] = lines
    return found


def _stays_on_own_nats(lab: Lab, nats: dict[str, str], seconds: float) -> None:
    """Every zone's routes target its own NAT at each look during ``seconds`` (an observation window)."""
    enis = {zone: lab.primary_eni(instance) for zone, instance in nats.items()}
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for zone, eni in enis.items():
            targets = set(lab.route_targets(zone).values())
            assert targets == {eni}, f"{zone} moved off its own NAT {nats[zone]}: {targets}"
        time.sleep(0.5)  # the window's sampling period, not a wait for a condition


def moved_off(lab: Lab, zone: str, dead_eni: str, survivor_enis: dict[str, str]) -> str | None:
    """None while a route of ``zone`` still targets ``dead_eni``; then the survivor holding them (or the targets)."""
    targets = set(lab.route_targets(zone).values())
    if dead_eni in targets:
        return None
    return covering_zone(lab, zone, survivor_enis) or f"targets {sorted(map(str, targets))}"


def test_a_zone_whose_covering_survivor_dies_is_served_again(three_zone_lab: Lab, record_fault):
    lab = three_zone_lab
    wait_for_watchers(lab)
    before = {zone: lab.current_nat(zone) for zone in lab.zones}
    enis = {zone: lab.primary_eni(instance) for zone, instance in before.items()}
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
    lines = takeover_lines(lab, {last: after[last]}, covering)[last]
    assert lines and "rule=peer-dead" in lines[-1], lines
    # The last NAT's own zone carried on: a few datagrams at most, no outage.
    assert recovered[last] == 0.0, f"{last}'s own clients had an outage: {recovered}"
