"""The NAT's metrics: the real boot script counts what it forwards and publishes it to CloudWatch.

NAT B boots the real rendered user data (metrics on), then runs the metrics unit's own loop with a
2 s interval instead of 60 s for a few rounds, while a private host sends a known UDP stream through
it. The sums CloudWatch (the emulator) holds are checked against the packets the test counted.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from test_image_profiles import BOOT_TIMEOUT, _port, nat_b_sandbox, needs_netns

from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import CloudLab
from natlab.cloud.image import Image
from natlab.cloud.probes import _UDP_FORMAT
from natlab.waiting import wait_until

NAMESPACE = "NatLab/Metrics"
ROUNDS, INTERVAL = 4, 2
#: IPv4 + UDP headers around each datagram of the stream.
HEADERS = 20 + 8
#: What else the NAT may forward in the window, besides the stream (nothing is expected; a margin).
SLACK_BYTES = 2000


def with_metrics(user_data: str) -> str:
    assert "NAT_METRICS_NAMESPACE=''" in user_data and user_data.rstrip().endswith('main "$@"')
    user_data = user_data.replace("NAT_METRICS_NAMESPACE=''", f"NAT_METRICS_NAMESPACE='{NAMESPACE}'", 1)
    user_data = user_data.replace("#!/usr/bin/env bash\n", f"#!/usr/bin/env bash\nNAT_METRICS_INTERVAL={INTERVAL}\n", 1)
    return user_data.rstrip() + f"\nmetrics_loop {ROUNDS}\n"


def sums(cloudwatch: Any, names: list[str]) -> dict[str, float]:
    now = datetime.now(UTC)
    out = {}
    for name in names:
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            Dimensions=[{"Name": "AutoScalingGroupName", "Value": "natlab-nat-b"}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum", "Maximum"],
        )["Datapoints"]
        out[name] = sum(point["Sum"] for point in points)
        out[f"{name}.max"] = max((point["Maximum"] for point in points), default=0.0)
    return out


@needs_netns
def test_forwarded_bytes_and_packets_match_the_traffic_sent(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path
) -> None:
    with nat_b_sandbox(lab, _port(aws), tmp_path, image=Image("baked"), edit=with_metrics, attach=vpc.attach) as box:
        wait_until(
            lambda: "publishing metrics to" in box.boot_log(), timeout=BOOT_TIMEOUT, what="the metrics loop started"
        )
        with vpc.udp_stream(rate=100, duration=2, late=0.5) as stream:
            stream.wait(timeout=10)
        box.wait(timeout=ROUNDS * INTERVAL + 30)
    assert box.exit_code == 0, box.describe()
    result = stream.result
    # Each echo that came back crossed the NAT twice; a datagram lost on a loaded machine may have
    # crossed it once or not at all (seen: 392 counted for 394 sent + received, none lost past the NAT).
    crossed = 2 * len(result.received)
    packets = len(result.sent) + len(result.received)  # at most: out, and the echo back
    size = struct.calcsize(_UDP_FORMAT) + HEADERS
    seen = sums(aws.client("cloudwatch"), ["ForwardedBytes", "ForwardedPackets", "ConntrackEntries", "RoutesMoved"])
    assert result.received, "the stream never came back through NAT B"
    assert crossed <= seen["ForwardedPackets"] <= packets + SLACK_BYTES // 64, (crossed, packets, seen)
    assert crossed * size <= seen["ForwardedBytes"] <= packets * size + SLACK_BYTES, (crossed, packets, seen)
    assert seen["ConntrackEntries.max"] >= 1, seen  # the stream's flow, at least
    assert seen["RoutesMoved"] == 1, seen  # the boot's one move
