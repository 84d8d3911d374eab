"""Bad harness options are refused at start-up with a message naming the option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from natlab.lab.settings import HarnessSettings, SettingsError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sla": 0}, "--sla must be more than 0"),
        ({"boot_delay": -1}, "--boot-delay must be at least 0"),
        ({"boot_delay": 200, "sla": 180}, "below --sla"),
        ({"backend": "localstack"}, "--backend localstack needs --endpoint-url"),
        ({"backend": "localstack", "endpoint_url": "localhost:4566"}, "--endpoint-url must be an http"),
        ({"backend": "moto", "endpoint_url": "http://127.0.0.1:4566"}, "--endpoint-url is for --backend localstack"),
        ({"backend": "aws", "region": "eu-west-1"}, "--aws-confirm-costs"),
        ({"backend": "aws", "aws_confirm_costs": True}, "--backend aws needs --region"),
    ],
)
def test_bad_option_is_refused_with_its_name(options: dict, message: str):
    with pytest.raises(SettingsError, match=message):
        HarnessSettings(**options)


def test_defaults_are_the_embedded_emulator_and_a_three_minute_sla():
    settings = HarnessSettings()
    assert (settings.backend, settings.sla, settings.boot_delay) == ("moto", 180.0, 0.0)


def test_bad_option_stops_pytest_before_any_test():
    harness = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(harness), "--sla", "-5", "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=harness.parent,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "--sla must be more than 0" in result.stderr
