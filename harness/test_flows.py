"""ManyFlows' own rules: bad arguments and a too-low open-file limit say what to change, before any socket opens."""

from __future__ import annotations

import resource

import pytest

from natlab.cloud import flows
from natlab.cloud.flows import ManyFlows, stall_bound


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count must be from 1 to 5000 flows, got 0"),
        ({"count": 5001}, "count must be from 1 to 5000 flows, got 5001"),
        ({"interval": 0.0}, "interval must be from 0.05 to 60 seconds, got 0.0"),
    ],
)
def test_bad_arguments_name_the_field_and_what_is_allowed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ManyFlows("/run/netns/none", **kwargs)


def test_a_hard_open_file_limit_too_low_for_the_flows_fails_with_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 512))
    with pytest.raises(OSError, match=r"count=1000 needs about \d+ open files, but RLIMIT_NOFILE allows 512"):
        flows.ensure_open_files(1000)


def test_the_soft_open_file_limit_is_raised_within_the_hard_one(monkeypatch) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (64, 100_000))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: set_to.append(limits))
    flows.ensure_open_files(1000)
    assert len(set_to) == 1 and 1000 + flows.SPARE_FILES <= set_to[0][0] <= 100_000 and set_to[0][1] == 100_000


def test_the_stall_bound_grows_with_the_outage_past_the_retransmission_backoff() -> None:
    assert stall_bound(10.0, 10.5) == flows.MIN_STALL  # a short outage: the floor
    # The first retransmission after an outage of T comes within T + 0.2 s (doubling from 200 ms).
    assert stall_bound(0.0, 30.0) > 30.0 + flows.TCP_RTO_MIN
