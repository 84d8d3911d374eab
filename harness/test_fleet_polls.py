"""One look of the fleet at the emulator decides from what it read: no restart on a state read before a stop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class Watched:
    """A fleet (never started: no thread, no emulator) whose warm pool holds one booted instance."""

    fleet: InstanceFleet
    pools: WarmPools
    booted: list[dict[str, Any]]  # the keyword arguments of every boot the fleet started

    def look(self, state: str) -> None:
        """One poll of the fleet, reading the instance in ``state``."""
        self.fleet._instances = lambda: iter([{"InstanceId": WARM, "State": {"Name": state}}])  # type: ignore[method-assign]
        self.fleet.poll_once()


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    pools = WarmPools()
    pools.add("nat-a", WARM)
    fleet = InstanceFleet(1, warm_pools=pools)
    fleet.sandboxes[WARM] = Box()  # type: ignore[assignment]
    fleet._stops_at_boot[WARM] = 0
    booted: list[dict[str, Any]] = []
    monkeypatch.setattr(fleet, "_asg_instances", set)
    monkeypatch.setattr(fleet, "_boot", lambda instance, **kind: booted.append(kind))
    yield Watched(fleet, pools, booted)
    fleet.close()  # its work folder


def test_a_stop_counted_after_the_state_was_read_ends_the_sandbox_without_a_restart(watched: Watched) -> None:
    watched.pools.note_stopped(WARM)  # the keeper stopped it after this look read "running"
    watched.look("running")
    assert watched.fleet.sandboxes[WARM].terminated and watched.booted == []
    watched.look("stopped")
    assert watched.booted == []


def test_an_instance_stopped_and_started_between_two_looks_boots_again_at_the_next(watched: Watched) -> None:
    watched.pools.note_stopped(WARM)
    watched.look("running")
    watched.look("running")
    assert watched.booted == [{"started_again": True}]
