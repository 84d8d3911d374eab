"""Start-up checks: a run that cannot work stops before any test, with one line saying what to do."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from natlab.lab import preflight
from natlab.lab.settings import HarnessSettings

REPO = Path(__file__).resolve().parents[1]


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


class _NotAws(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def web_server_that_is_not_aws() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAws)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fake_terraform(directory: Path, version: str) -> None:
    script = directory / "terraform"
    script.write_text(f'#!/bin/sh\necho \'{{"terraform_version": "{version}"}}\'\n')
    script.chmod(0o755)


def test_an_unreachable_endpoint_is_named_once_with_what_to_do() -> None:
    url = f"http://127.0.0.1:{closed_loopback_port()}"
    problem = preflight.backend_problem(HarnessSettings(backend="localstack", endpoint_url=url))
    assert problem is not None
    assert problem.startswith(f"--endpoint-url {url}: nothing answers at {url}")
    assert problem.endswith("start LocalStack there or fix the URL")


def test_an_endpoint_that_answers_but_not_as_aws_is_named(web_server_that_is_not_aws: str) -> None:
    settings = HarnessSettings(backend="localstack", endpoint_url=web_server_that_is_not_aws)
    problem = preflight.backend_problem(settings)
    assert problem is not None and "answers, but not as AWS does" in problem
    assert "Traceback" not in problem


def test_the_embedded_emulator_needs_no_probe() -> None:
    assert preflight.backend_problem(HarnessSettings()) is None


def test_missing_terraform_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert preflight.terraform_problem() == (
        "Terraform CLI not found on PATH; install Terraform >= 1.9.0 (make bootstrap checks it)"
    )


def test_a_terraform_too_old_for_the_module_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_terraform(tmp_path, "1.5.7")
    monkeypatch.setenv("PATH", str(tmp_path))
    problem = preflight.terraform_problem()
    assert (
        problem
        == f"Terraform 1.5.7 at {tmp_path / 'terraform'} is too old: the module needs >= 1.9.0; install a newer one"
    )


def test_a_terraform_new_enough_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_terraform(tmp_path, "1.11.4")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert preflight.terraform_problem() is None


def test_a_bad_endpoint_stops_the_run_before_any_test() -> None:
    url = f"http://127.0.0.1:{closed_loopback_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "harness/test_waiting.py", "-p", "no:xdist", "-p", "no:randomly",
         "--backend", "localstack", "--endpoint-url", url],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert f"--endpoint-url {url}: nothing answers" in run.stderr
    assert "passed" not in run.stdout and "Traceback" not in run.stderr
