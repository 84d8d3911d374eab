"""Three zones, three NATs: killing one zone's NAT heals that zone and leaves the others alone."""

from __future__ import annotations

import contextlib

import pytest

from natlab.lab.failover import run_failover
from natlab.lab.lab import Lab

FAILED_ZONE = "us-east-1b"
#: Both scenarios share one lab on one xdist worker (``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("three_zone_lab")


def test_killing_one_zones_nat_leaves_other_zones_untouched(three_zone_lab: Lab, record_failover):
    lab = three_zone_lab
    others = [zone for zone in lab.zones if zone != FAILED_ZONE]
    nats_before = {zone: lab.current_nat(zone) for zone in others}
    with contextlib.ExitStack() as stack:
        streams = {}
        if lab.vpc is not None:
            for zone in others:
                subnet = lab.zones[zone].private_subnet_id
                streams[zone] = stack.enter_context(lab.vpc.udp_stream(subnet, rate=100, duration=60))
                streams[zone].wait_received(10)
        result = run_failover(lab, FAILED_ZONE, "terminate")
        for stream in streams.values():
            stream.stop()
    record_failover(lab, result, "terminate-nat-3-zones")
    assert result.problems == [], result.summary()  # includes: other zones' routes unchanged
    assert result.seconds is not None and result.seconds <= result.sla
    assert {zone: lab.current_nat(zone) for zone in others} == nats_before
    lost = {zone: stream.result.lost for zone, stream in streams.items()}
    # Stopping the stream may cut off the last few echoes in flight; an outage would be hundreds.
    assert all(count <= 3 for count in lost.values()), f"other zones lost datagrams: {lost}"


def test_second_plan_is_empty_after_failover_in_three_zones(three_zone_lab: Lab):
    assert three_zone_lab.terraform.has_changes() is False, three_zone_lab.terraform.transcript(last=1)
