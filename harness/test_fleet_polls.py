"""One look of the fleet at the emulator decides from what it read: no restart on a state read before a stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from natlab.cloud.fleet import InstanceFleet
from natlab.cloud.warm_pool import WarmPools

WARM = "i-0warm"


class Box:
    """Stands in for a sandbox: only whether it was ended."""

    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True

    def close(self) -> None:
        self.terminated = True


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[InstanceFleet]:
    """A fleet (never started: no thread, no emulator) whose warm pool holds one booted instance."""
    pools = WarmPools()
    pools.add("nat-a", WARM)
    fleet = InstanceFleet(1, warm_pools=pools)
    fleet.sandboxes[WARM] = Box()  # type: ignore[assignment]
    fleet._stops_at_boot[WARM] = 0
    monkeypatch.setattr(fleet, "_asg_instances", set)
    fleet.booted: list[dict[str, Any]] = []  # type: ignore[misc]
    monkeypatch.setattr(fleet, "_boot", lambda instance, **kind: fleet.booted.append(kind))  # type: ignore[attr-defined]
    yield fleet
    fleet.close()  # its work folder


def look(fleet: InstanceFleet, state: str) -> None:
    fleet._instances = lambda: iter([{"InstanceId": WARM, "State": {"Name": state}}])  # type: ignore[method-assign]
    fleet.poll_once()


def test_a_stop_counted_after_the_state_was_read_ends_the_sandbox_without_a_restart(fleet: InstanceFleet) -> None:
    assert fleet.warm_pools is not None
    fleet.warm_pools.note_stopped(WARM)  # the keeper stopped it after this look read "running"
    look(fleet, "running")
    assert fleet.sandboxes[WARM].terminated and fleet.booted == []  # type: ignore[attr-defined]
    look(fleet, "stopped")
    assert fleet.booted == []  # type: ignore[attr-defined]


def test_an_instance_stopped_and_started_between_two_looks_boots_again_at_the_next(fleet: InstanceFleet) -> None:
    assert fleet.warm_pools is not None
    fleet.warm_pools.note_stopped(WARM)
    look(fleet, "running")
    look(fleet, "running")
    assert fleet.booted == [{"started_again": True}]  # type: ignore[attr-defined]
