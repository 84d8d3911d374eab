"""AWS API trouble during boot: a proxy in front of the emulator throttles, fails and slows a share of
the boot's API calls, and the real boot script still takes the zone over, its retries in the log.

What the proxy does to the instance's requests, in order (deterministic, so a failure is repeatable):
of every three requests the first is answered ``503 RequestLimitExceeded`` (EC2's throttling), the
second ``500 InternalError``, the third reaches the emulator; every request waits ``ADDED_LATENCY``
first. So each API call of the boot fails twice before it succeeds: two thirds of the requests, more
than the 30 % the fault matrix asks for.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_image_profiles import BOOT_TIMEOUT, _identity, _port, _route_target, needs_netns

from natlab.cloud.dataplane_lab import VPC_CIDR, CloudLab
from natlab.cloud.image import Image
from natlab.cloud.sandbox import InstanceSandbox
from natlab.module.userdata import render

ADDED_LATENCY = 0.1
SLA = 180.0
THROTTLED = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>natlab</RequestID></Response>"  # noqa: E501
INTERNAL = b"<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>natlab</RequestID></Response>"  # noqa: E501


class FlakyAws(http.server.ThreadingHTTPServer):
    """Forwards to the emulator at ``upstream``, failing the requests the module docstring says."""

    def __init__(self, upstream: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.answers: list[int] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FlakyAws

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(ADDED_LATENCY)
        with self.server.lock:
            number = len(self.server.answers) + 1
        if number % 3 == 1:
            status, headers, payload = 503, {"Content-Type": "text/xml"}, THROTTLED
        elif number % 3 == 2:
            status, headers, payload = 500, {"Content-Type": "text/xml"}, INTERNAL
        else:
            upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=10)
            upstream.request("POST", self.path, body, headers=dict(self.headers))
            answer = upstream.getresponse()
            status, headers, payload = (
                answer.status,
                {"Content-Type": answer.getheader("Content-Type", "")},
                answer.read(),
            )
            upstream.close()
        with self.server.lock:
            self.server.answers.append(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def flaky_aws(aws: Any) -> Iterator[FlakyAws]:
    proxy = FlakyAws(_port(aws))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@needs_netns
def test_a_boot_whose_api_calls_are_throttled_and_failing_still_takes_the_zone_over(
    lab: CloudLab, flaky_aws: FlakyAws, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    identity = _identity(lab, lab.nat_b)
    user_data = render(
        zone=identity.az, asg_name="natlab-api-faults", route_table_ids=[lab.private_rtb], served_cidrs=[VPC_CIDR]
    ).encode()
    port = flaky_aws.server_address[1]
    with InstanceSandbox(identity, user_data, port, image=Image("baked"), workdir=tmp_path, keep=True) as box:
        box.wait(timeout=BOOT_TIMEOUT)
    assert box.exit_code == 0, box.describe()
    assert _route_target(lab) == lab.eni[lab.nat_b], box.describe()
    assert 503 in flaky_aws.answers and 500 in flaky_aws.answers, flaky_aws.answers
    log = box.boot_log()
    assert "failed (RequestLimitExceeded: Request limit exceeded.); retrying in" in log, log
    assert "failed (InternalError: An internal error has occurred.); retrying in" in log, log
    took = (box.exited_at or 0) - (box.started_at or 0)
    assert took <= SLA, f"the boot took {took:.1f} s"  # the failover SLA, the one time a test may assert
    failed = sum(1 for status in flaky_aws.answers if status >= 500)
    record_fault(
        f"{failed} of {len(flaky_aws.answers)} boot API requests throttled (503) or failed (500), "
        f"+{ADDED_LATENCY:g} s each",
        "boot retried and took the zone over",
        took,
    )
