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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_image_profiles import BOOT_TIMEOUT, _port, _route_target, nat_b_sandbox, needs_netns

from natlab.cloud.dataplane_lab import CloudLab
from natlab.cloud.image import Image
from natlab.cloud.sandbox import InstanceSandbox

ADDED_LATENCY = 0.1
SLA = 180.0
THROTTLED = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>natlab</RequestID></Response>"  # noqa: E501
UNAUTHORIZED = b"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>natlab</RequestID></Response>"  # noqa: E501
INTERNAL = b"<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>natlab</RequestID></Response>"  # noqa: E501


#: Decides a request's fate: its number (from 1) and form body -> (status, XML) to answer, or None to
#: let it reach the emulator.
Verdict = Callable[[int, bytes], tuple[int, bytes] | None]


def two_of_three_fail(number: int, body: bytes) -> tuple[int, bytes] | None:
    """The module docstring's pattern: 503 throttled, 500 internal error, then through."""
    return {1: (503, THROTTLED), 2: (500, INTERNAL)}.get(number % 3)


def route_changes_refused(number: int, body: bytes) -> tuple[int, bytes] | None:
    """What EC2 answers when the role may not change the route table: every route change refused."""
    if b"Action=ReplaceRoute" in body or b"Action=CreateRoute" in body:
        return 403, UNAUTHORIZED
    return None


class FlakyAws(http.server.ThreadingHTTPServer):
    """Forwards to the emulator at ``upstream``, answering itself where ``verdict`` says."""

    def __init__(self, upstream: int, verdict: Verdict) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.verdict = verdict
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
        verdict = self.server.verdict(number, body)
        if verdict is not None:
            (status, payload), headers = verdict, {"Content-Type": "text/xml"}
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


def start_proxy(aws: Any, verdict: Verdict) -> Iterator[FlakyAws]:
    proxy = FlakyAws(_port(aws), verdict)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def flaky_aws(aws: Any) -> Iterator[FlakyAws]:
    yield from start_proxy(aws, two_of_three_fail)


@pytest.fixture
def refusing_aws(aws: Any) -> Iterator[FlakyAws]:
    yield from start_proxy(aws, route_changes_refused)


def boot_nat_b(lab: CloudLab, port: int, workdir: Path) -> InstanceSandbox:
    """NAT B boots the real rendered user data (baked image) against the API at ``port``."""
    with nat_b_sandbox(lab, port, workdir, image=Image("baked")) as box:
        box.wait(timeout=BOOT_TIMEOUT)
    return box


@needs_netns
def test_a_boot_whose_api_calls_are_throttled_and_failing_still_takes_the_zone_over(
    lab: CloudLab, flaky_aws: FlakyAws, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    box = boot_nat_b(lab, flaky_aws.server_address[1], tmp_path)
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


@needs_netns
def test_a_default_route_deleted_before_boot_is_created(
    aws: Any, lab: CloudLab, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    lab.ec2.delete_route(RouteTableId=lab.private_rtb, DestinationCidrBlock="0.0.0.0/0")
    box = boot_nat_b(lab, _port(aws), tmp_path)
    assert box.exit_code == 0, box.describe()
    assert _route_target(lab) == lab.eni[lab.nat_b], box.describe()
    assert f"created 0.0.0.0/0 in {lab.private_rtb}" in box.boot_log(), box.boot_log()
    record_fault("the default route deleted before the boot", "created by the boot (replace, then create)")


@needs_netns
def test_a_route_table_the_role_may_not_change_abandons_before_any_route_moved(
    lab: CloudLab, refusing_aws: FlakyAws, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    box = boot_nat_b(lab, refusing_aws.server_address[1], tmp_path)
    assert box.exit_code not in (0, None), box.describe()
    assert _route_target(lab) == lab.eni[lab.nat_a], "the route must stay on the NAT that had it"
    log = box.boot_log()
    assert f"replace-route in {lab.private_rtb} failed: UnauthorizedOperation" in log, log
    assert "no route table could be pointed at" in log, log
    assert "retrying" not in log, "an authorization error is not retried"
    # No table moved, so the boot gives up at once (tables are tried again only past the commit point).
    assert refusing_aws.answers.count(403) == 1, refusing_aws.answers
    record_fault("every route change refused (UnauthorizedOperation)", "abandoned before any route moved")
