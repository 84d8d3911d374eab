"""One Spot interruption in a takeover lab, measured: notice -> handover -> termination -> give-back.

The scenario (the last one of ``harness/test_takeover.py``) and the benchmark (``bench/spot_handover.py``) run this:
a UDP echo stream from every zone's private workload, EC2's notice in ``zone``'s NAT
(``Lab.interrupt_spot``), the routes seen on another zone's NAT, the termination, then the zone's
replacement (booting after ``boot_delay``) serving it again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from natlab.cloud.probes import Gap
from natlab.lab.lab import Lab
from natlab.lab.peer_takeover import covering_zone, streams_for, survivor_enis
from natlab.waiting import wait_until


@dataclass(frozen=True)
class HandoverRun:
    zone: str
    old: str
    """The interrupted NAT."""
    new: str
    """Its replacement, serving the zone at the end."""
    covering: str
    """The zone whose NAT the routes were handed to."""
    covering_eni: str
    notice_to_handover_s: float
    handed_before_termination: bool
    notice_period_s: float
    gaps: dict[str, list[Gap]]
    """Per zone, the stream's gaps that closed (the last datagrams in flight at the stop are not one)."""
    moments: dict[str, float]
    """Monotonic times: notice, handover (routes seen on the covering NAT), termination, give-back
    (routes seen on the replacement). The two "seen" times come from polling, up to ~50 ms late."""

    def gap_report(self, zone: str) -> list[str]:
        """Each gap of ``zone`` as "<lost> lost at +<s> (<s> long; nearest moment <name> <+/-s>)", the
        time relative to the notice; the nearest moment may come after the gap (a route seen late)."""
        lines = []
        for gap in self.gaps[zone]:
            name, at = min(self.moments.items(), key=lambda item: abs(item[1] - gap.start))
            lines.append(
                f"{gap.lost} lost at +{gap.start - self.moments['notice']:.2f} s "
                f"({gap.end - gap.start:.3f} s long; nearest moment {name} {gap.start - at:+.2f} s)"
            )
        return lines

    def lost(self, zone: str) -> int:
        return sum(gap.lost for gap in self.gaps[zone])

    def longest_gap_s(self, zone: str) -> float:
        return max((gap.end - gap.start for gap in self.gaps[zone]), default=0.0)


def run_interruption(lab: Lab, zone: str, boot_delay: float) -> HandoverRun:
    """Interrupts ``zone``'s NAT once, every zone streaming; returns what it cost."""
    assert lab.vpc is not None, "a handover run needs the data plane"
    old = lab.current_nat(zone)
    enis = survivor_enis(lab, zone)
    with lab.modelled_boot_delay(boot_delay), lab.watching_closely(), contextlib.ExitStack() as stack:
        streams = streams_for(lab, list(lab.zones), stack, rate=100, duration=180)
        with lab.interrupt_spot(zone) as notice:
            covering = wait_until(
                lambda: covering_zone(lab, zone, enis),
                what=f"{zone}'s NAT to hand its routes over",
                timeout=notice.period + 5,
            )
            handed_at = time.monotonic()
            notice.wait_terminated(timeout=notice.period + 5)
        new = lab.wait_until_serving(zone, timeout=lab.settings.sla)
        given_back_at = time.monotonic()
        for stream in streams.values():
            stream.stop()
    return HandoverRun(
        zone=zone,
        old=old,
        new=new,
        covering=covering,
        covering_eni=enis[covering],
        notice_to_handover_s=handed_at - notice.noticed_at,
        handed_before_termination=handed_at < notice.terminates_at,
        notice_period_s=notice.period,
        gaps={z: [g for g in streams[z].result.gaps() if g.end != float("inf")] for z in lab.zones},
        moments={
            "notice": notice.noticed_at,
            "handover seen": handed_at,
            "termination": notice.terminated_at or notice.terminates_at,
            "give-back seen": given_back_at,
        },
    )
