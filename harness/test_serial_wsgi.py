"""The embedded emulator takes one request at a time (moto is not thread-safe) and logs every 5xx."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.cloud.serial_wsgi import SerializedWsgi


def test_requests_never_overlap_inside_the_wrapped_app() -> None:
    inside, overlaps = [0], []
    guard = threading.Lock()

    def slow_app(environ, start_response):
        with guard:
            inside[0] += 1
            overlaps.append(inside[0])
        time.sleep(0.01)
        with guard:
            inside[0] -= 1
        start_response("200 OK", [])
        return [b"ok"]

    app = SerializedWsgi(slow_app)
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(lambda _: app({}, lambda *a: None), range(32)))
    assert bodies == [[b"ok"]] * 32
    assert max(overlaps) == 1, f"up to {max(overlaps)} requests ran at once"


def test_an_answer_of_500_is_logged_with_the_request(caplog: pytest.LogCaptureFixture) -> None:
    def failing_app(environ, start_response):
        start_response("500 Internal Server Error", [])
        return [b"boom"]

    with caplog.at_level(logging.WARNING, logger="natlab.cloud.serial_wsgi"):
        SerializedWsgi(failing_app)({"REQUEST_METHOD": "POST", "PATH_INFO": "/"}, lambda *a: None)
    assert "emulator answered 500 Internal Server Error to POST /" in caplog.text


def test_the_embedded_emulator_serves_through_the_wrapper(aws: MotoBackend) -> None:
    assert isinstance(aws._server._server.app, SerializedWsgi)
    assert aws.client("ec2").describe_vpcs()["Vpcs"] is not None
