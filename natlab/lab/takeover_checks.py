"""What the compound takeover scenarios check: clients reaching out, outages, watchers' decisions, routes staying.

Used by ``harness/test_takeover.py`` (a partition between two healthy NATs, a covering survivor that
dies too). The watcher log and who covers a zone come from :mod:`natlab.lab.peer_takeover`.
"""

from __future__ import annotations

import time

from natlab.cloud.probes import UdpStream
from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import covering_zone, watch_log

#: A gap of fewer datagrams is the loaded machine, not an outage (50 a second: 100 ms).
OUTAGE_MIN_LOST = 5


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


def takeovers(
    lab: Lab, nats: dict[str, str], zones: tuple[str, ...], since: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """Per zone of ``zones``: the takeover lines about it in every watcher of ``nats`` (after ``since``).

    A NAT already replaced has no log left: it counts as none (unlike :func:`takeover_lines`).
    """
    found: dict[str, list[str]] = {}
    for zone in zones:
        lines: list[str] = []
        for other, instance in nats.items():
            box = lab.sandbox(instance)
            text = watch_log(box)[(since or {}).get(other, 0) :] if box is not None else ""
            lines += [line for line in text.splitlines() if f"takeover zone={zone} " in line]
        found[zone] = lines
    return found


def stays_on_own_nats(lab: Lab, nats: dict[str, str], seconds: float) -> None:
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
