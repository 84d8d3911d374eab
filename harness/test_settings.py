"""The harness's options: one table gives their flags, defaults, types and rules; bad values stop pytest at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from natlab.lab.settings import BACKENDS, OPTION_GROUP, HarnessSettings, SettingsError

HARNESS = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sla": 0}, "--sla must be more than 0 and at most 3600 seconds, got 0.0"),
        ({"sla": "soon"}, "--sla must be a number, got 'soon'"),
        ({"boot_delay": -1}, "--boot-delay must be at least 0 seconds, got -1.0"),
        ({"boot_delay": 200, "sla": 180}, r"--boot-delay must be below --sla \(180.0 s\), got 200.0"),
        ({"backend": "gcp"}, "--backend must be one of moto, localstack, aws, got 'gcp'"),
        ({"backend": "localstack"}, "--backend localstack needs --endpoint-url"),
        ({"backend": "localstack", "endpoint_url": "localhost:4566"}, "--endpoint-url must be an http"),
        ({"backend": "moto", "endpoint_url": "http://127.0.0.1:4566"}, "--endpoint-url is for --backend localstack"),
        ({"backend": "aws", "region": "eu-west-1"}, "--aws-confirm-costs"),
        ({"backend": "aws", "aws_confirm_costs": True}, "--backend aws needs --region"),
        ({"report_dir": 3}, "--report-dir must be a path, got 3"),
        ({"keep": "yes"}, "--keep must be true or false, got 'yes'"),
        ({"image": "ubuntu"}, "--image must be one of al2023, baked, got 'ubuntu'"),
    ],
)
def test_bad_value_is_refused_with_the_option_and_what_is_allowed(options: dict, message: str):
    with pytest.raises(SettingsError, match=message):
        HarnessSettings(**options)


def test_defaults_are_the_embedded_emulator_and_a_three_minute_sla():
    settings = HarnessSettings()
    assert (settings.backend, settings.sla, settings.boot_delay) == ("moto", 180.0, 0.0)


def test_every_field_is_one_row_of_the_option_table():
    rows = {row.name: row for row in HarnessSettings.options()}
    assert list(rows) == [name for name in HarnessSettings.__dataclass_fields__], "one option per settings field"
    assert rows["boot_delay"].flag == "--boot-delay"
    assert rows["sla"].kind is float and rows["report_dir"].kind is Path and rows["endpoint_url"].kind is str
    assert rows["backend"].choices == BACKENDS
    assert all(row.help for row in rows.values()), "every option has help"
    defaults = HarnessSettings()
    assert all(row.default == getattr(defaults, row.name) for row in rows.values()), "the table gives the defaults"


def test_command_line_text_becomes_the_fields_types():
    settings = HarnessSettings(sla="90", boot_delay="2.5", report_dir="out", region="eu-west-1")
    assert (settings.sla, settings.boot_delay, settings.report_dir) == (90.0, 2.5, Path("out"))


class _Config:
    """Stands in for pytest's config: only what the command line set."""

    def __init__(self, given: dict[str, object]) -> None:
        self.given = given

    def getoption(self, name: str, default: object = None) -> object:
        return self.given.get(name, default)


def test_settings_come_from_the_options_and_unset_ones_keep_their_default():
    settings = HarnessSettings.from_options(_Config({"sla": "60", "keep": True}))
    assert settings == HarnessSettings(sla=60.0, keep=True)


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(HARNESS), "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HARNESS.parent,
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--sla", "-5"), "ERROR: --sla must be more than 0 and at most 3600 seconds, got -5.0"),
        (("--sla", "soon"), "ERROR: --sla must be a number, got 'soon'"),
        (("--backend", "gcp"), "ERROR: --backend must be one of moto, localstack, aws, got 'gcp'"),
    ],
)
def test_bad_option_stops_pytest_before_any_test_with_one_line(args: tuple[str, ...], line: str):
    result = _pytest(*args)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert result.stderr.strip() == line
    assert "collected" not in result.stdout


def test_options_are_listed_once_in_their_own_group_of_help():
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", str(HARNESS), "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HARNESS.parent,
        check=True,
    ).stdout
    group = help_text.split(f"{OPTION_GROUP[1]}:\n", 1)[1].split("\n\n", 1)[0]
    for row in HarnessSettings.options():
        declared = rf"^  {re.escape(row.flag)}(?![-\w])"
        assert len(re.findall(declared, help_text, re.MULTILINE)) == 1, f"{row.flag} is declared once"
        assert re.search(declared, group, re.MULTILINE), f"{row.flag} is in the {OPTION_GROUP[1]!r} group"


def test_readme_documents_every_option_of_the_table():
    readme = (HARNESS.parent / "README.md").read_text()
    documented = re.findall(r"^\| `(--[a-z-]+)` \|", readme, re.MULTILINE)
    assert documented == [row.flag for row in HarnessSettings.options()], "README's options table, in table order"
