"""The boot script's AWS API path (`aws_query` in userdata/nat-boot.sh): curl signs, the script retries.

Each test sources the real script (NAT_BOOT_FUNCTIONS_ONLY=1) and calls `aws_query` against a
loopback HTTP server that records what arrives and answers from a script of replies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/token+with=base64chars"
REGION = "eu-west-3"
HANG = (0, "")  # a reply that never comes
OK_ROUTE = "<ReplaceRouteResponse><requestId>r-1</requestId><return>true</return></ReplaceRouteResponse>"


def ec2_error(code: str, message: str) -> str:
    """An EC2 Query API error body (Response/Errors/Error)."""
    return f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors></Response>"


def query_error(code: str, message: str) -> str:
    """An Auto Scaling / SNS Query API error body (ErrorResponse/Error)."""
    error = f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
    return f"<ErrorResponse><Error>{error}</Error></ErrorResponse>"


@dataclass
class Received:
    headers: dict[str, str]
    body: str


@dataclass
class FakeEndpoint:
    """A loopback endpoint: records every request, answers with the next (status, body) reply."""

    replies: list[tuple[int, str]]
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint(replies=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            fake.received.append(Received(dict(self.headers.items()), body))
            status, text = fake.replies.pop(0) if fake.replies else (200, OK_ROUTE)
            if (status, text) == HANG:
                fake.release.wait(30)
                return
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def aws_query(endpoint: FakeEndpoint, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs `aws_query ARGS` from the real boot script, credentials from the environment."""
    script = f'source "{BOOT_SCRIPT_PATH}"; aws_region={REGION}; load_credentials >/dev/null; aws_query "$@"'
    base = functions_only_env(f"http://127.0.0.1:{endpoint.port}", KEY_ID, SECRET)
    return subprocess.run(
        ["bash", "-c", script, "aws_query", *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=90,
    )


ROUTE_ARGS = ("ec2", "ReplaceRoute", "RouteTableId=rtb-1", "DestinationCidrBlock=0.0.0.0/0", "NetworkInterfaceId=eni-2")


# -- signing ---------------------------------------------------------------------------------------


def botocore_authorization(received: Received, url: str, token: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Authorization header botocore's SigV4Auth computes for the same request at curl's X-Amz-Date."""
    signed_at = datetime.strptime(received.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=received.body.encode())
    botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET, token), "ec2", REGION).add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term-key", "session-token"])
def test_curl_signs_the_request_as_botocore_does(
    endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    result = aws_query(endpoint, *ROUTE_ARGS, **({"AWS_SESSION_TOKEN": token} if token else {}))
    assert result.returncode == 0, result.stderr
    assert "<return>true</return>" in result.stdout
    (received,) = endpoint.received
    form = parse_qs(received.body, strict_parsing=True)
    assert form == {
        "Action": ["ReplaceRoute"],
        "Version": ["2016-11-15"],
        "RouteTableId": ["rtb-1"],
        "DestinationCidrBlock": ["0.0.0.0/0"],
        "NetworkInterfaceId": ["eni-2"],
    }
    assert received.headers.get("X-Amz-Security-Token") == token
    signed = re.search(r"SignedHeaders=([^,]+)", received.headers["Authorization"])
    assert signed is not None
    expected_signed = "host;x-amz-date;x-amz-security-token" if token else "host;x-amz-date"
    assert signed[1] == expected_signed, "the session token must be signed, as botocore signs it"
    url = f"http://127.0.0.1:{endpoint.port}/"
    assert received.headers["Authorization"] == botocore_authorization(received, url, token, monkeypatch)


def test_the_secret_never_appears_on_curls_command_line(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    # A recording `curl` wrapper first on PATH sees the arguments any local user could read in ps.
    log = tmp_path / "curl-args.log"
    real = shutil.which("curl")
    wrapper = tmp_path / "curl"
    wrapper.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"{log}"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    result = aws_query(endpoint, *ROUTE_ARGS, PATH=f"{tmp_path}:{os.environ['PATH']}", AWS_SESSION_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    args = log.read_text()
    assert f"--aws-sigv4 aws:amz:{REGION}:ec2" in args
    assert SECRET not in args and TOKEN not in args


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (503, ec2_error("RequestLimitExceeded", "Request limit exceeded."), "RequestLimitExceeded"),
        (400, query_error("Throttling", "Rate exceeded"), "Throttling"),
        (500, ec2_error("InternalError", "An internal error has occurred"), "InternalError"),
    ],
    ids=["ec2-request-limit", "throttling-400", "http-500"],
)
def test_a_throttled_or_transient_answer_is_retried_and_the_call_succeeds(
    endpoint: FakeEndpoint, status: int, body: str, code: str
) -> None:
    endpoint.replies = [(status, body), (status, body), (200, OK_ROUTE)]
    result = aws_query(endpoint, *ROUTE_ARGS)
    assert result.returncode == 0, result.stderr
    assert len(endpoint.received) == 3
    notes = [line for line in result.stderr.splitlines() if "retrying in" in line]
    assert len(notes) == 2, result.stderr
    assert f"ec2 ReplaceRoute attempt 1 of 5 failed ({code}: " in notes[0]
    assert "attempt 2 of 5 failed" in notes[1]
    # every attempt is signed afresh with the same credentials
    credential = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/"
    assert all(r.headers["Authorization"].startswith(credential) for r in endpoint.received)


def test_a_call_throttled_every_time_gives_up_after_the_maximum_attempts(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [(503, ec2_error("RequestLimitExceeded", "Request limit exceeded."))] * 3
    result = aws_query(endpoint, *ROUTE_ARGS, AWS_MAX_ATTEMPTS="3")
    assert result.returncode == 1
    assert len(endpoint.received) == 3
    assert "RequestLimitExceeded: Request limit exceeded. (ec2 ReplaceRoute, attempt 3 of 3)" in result.stderr


def test_a_non_retryable_error_returns_at_once_with_code_and_message(endpoint: FakeEndpoint) -> None:
    message = "The routeTable ID &apos;rtb-dead&apos; does not exist"
    endpoint.replies = [(400, ec2_error("InvalidRouteTableID.NotFound", message))]
    result = aws_query(endpoint, *ROUTE_ARGS)
    assert result.returncode == 1
    assert len(endpoint.received) == 1
    assert result.stderr.splitlines()[-1] == (
        "InvalidRouteTableID.NotFound: The routeTable ID 'rtb-dead' does not exist (ec2 ReplaceRoute, attempt 1 of 5)"
    )
    assert "retrying" not in result.stderr


def test_a_hung_endpoint_is_bounded_by_the_request_timeout_and_retried(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [HANG, HANG]
    result = aws_query(endpoint, *ROUTE_ARGS, AWS_MAX_ATTEMPTS="2", NAT_AWS_REQUEST_TIMEOUT="1")
    assert result.returncode == 1
    assert len(endpoint.received) == 2
    assert "attempt 1 of 2 failed (RequestError: no answer from ec2 (curl exit 28" in result.stderr
    assert "(ec2 ReplaceRoute, attempt 2 of 2)" in result.stderr.splitlines()[-1]


def test_other_services_get_their_api_version_and_signing_name(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [(200, "<CompleteLifecycleActionResponse/>"), (200, "<PublishResponse/>")]
    for args in (
        ("autoscaling", "CompleteLifecycleAction", "LifecycleActionResult=CONTINUE"),
        ("sns", "Publish", "TopicArn=arn:aws:sns:eu-west-3:1:t", "Message=a & b = c"),
    ):
        assert aws_query(endpoint, *args).returncode == 0
    asg, sns = endpoint.received
    assert parse_qs(asg.body)["Version"] == ["2011-01-01"]
    assert f"/{REGION}/autoscaling/aws4_request" in asg.headers["Authorization"]
    assert parse_qs(sns.body)["Version"] == ["2010-03-31"]
    assert parse_qs(sns.body)["Message"] == ["a & b = c"]
    assert f"/{REGION}/sns/aws4_request" in sns.headers["Authorization"]
