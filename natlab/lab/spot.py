"""Spot interruptions in a lab: EC2's notice in the NAT's IMDS, then the termination it announced.

On AWS, EC2 writes ``spot/instance-action`` two minutes before it interrupts a Spot Instance (EC2
user guide, "Spot Instance interruption notices": "two minutes before Amazon EC2 stops or terminates
your Spot Instance"), and the Auto Scaling group replaces the instance once it is gone. Here the
notice goes into the instance's IMDS and the lab terminates the instance through the emulator when
the notice period ends; moto's TerminateInstances launches the replacement, which the fleet boots.

Scale: the 120 s notice runs 10x faster, 12 s. Not the lab's 50x for AWS's delays (2.4 s): the
watcher that reads the notice runs in real time (like boots) and checks IMDS every 5 s, so on AWS it
sees a notice within 5 s of 120; a 2.4 s notice would end before its first check, which no real
interruption does. 12 s leaves room for two checks and the handover.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natlab.lab.lab import Lab

#: EC2's notice period before a Spot interruption (EC2 user guide, "Spot Instance interruption notices").
SPOT_NOTICE_SECONDS = 120.0
#: How much faster than AWS the lab runs the notice (see the module docstring).
SPOT_NOTICE_SCALE = 0.1


@dataclass
class SpotInterruption:
    """One interruption under way: which instance, when the notice came and when EC2 takes it."""

    zone: str
    instance_id: str
    noticed_at: float
    """Monotonic time the notice appeared in IMDS."""
    period: float
    """Seconds (lab time) from the notice to the termination."""
    terminated: threading.Event = field(default_factory=threading.Event)
    terminated_at: float | None = None

    @property
    def terminates_at(self) -> float:
        return self.noticed_at + self.period

    def wait_terminated(self, timeout: float) -> None:
        if not self.terminated.wait(timeout):
            raise TimeoutError(f"{self.instance_id} was not terminated {timeout:.0f} s after its notice")


@contextlib.contextmanager
def interrupt_spot(lab: Lab, zone: str, scale: float = SPOT_NOTICE_SCALE) -> Iterator[SpotInterruption]:
    """The notice now in ``zone``'s NAT's IMDS; EC2 terminates that NAT ``120 s x scale`` later.

    The termination happens in the background during the block; leaving the block early (a failure)
    cancels it if it has not happened yet.
    """
    instance_id = lab.current_nat(zone)
    box = lab.sandbox(instance_id)
    if box is None or box.imds is None:
        raise RuntimeError(f"{zone}: no running sandbox (IMDS) for {instance_id}")
    period = SPOT_NOTICE_SECONDS * scale
    at = datetime.now(UTC) + timedelta(seconds=period)
    box.imds.announce_spot_interruption(at)
    interruption = SpotInterruption(zone, instance_id, time.monotonic(), period)
    cancel = threading.Event()

    def terminate() -> None:
        # The notice period itself (EC2's clock, scaled), not a wait for a condition.
        if cancel.wait(period):
            return
        lab.ec2.terminate_instances(InstanceIds=[instance_id])
        interruption.terminated_at = time.monotonic()
        interruption.terminated.set()

    worker = threading.Thread(target=terminate, name=f"spot-interruption-{instance_id}", daemon=True)
    worker.start()
    try:
        yield interruption
    finally:
        cancel.set()
        worker.join(timeout=30)
