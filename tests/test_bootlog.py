"""natlab.module.bootlog: the boot script's `nat-boot:` log, read into lines and step runs."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

from natlab.module import bootlog
from natlab.module.userdata import BOOT_SCRIPT_PATH


def at(seconds: float) -> str:
    """A boot-log timestamp `seconds` after 21:50:00 UTC, as the script writes it (milliseconds)."""
    whole, frac = divmod(round(seconds * 1000), 1000)
    return f"2026-11-26T21:50:{whole:02d}.{frac:03d}Z"


def when(seconds: float) -> datetime:
    return datetime.fromisoformat(at(seconds))


LOG = f"""\
cloud-init: starting user data
{at(1.0)} nat-boot: step=identity start
{at(1.25)} nat-boot: step=identity done
{at(2.0)} nat-boot: step=routes start
{at(2.5)} nat-boot: step=routes rtb-1 -> eni-2
An error occurred (InvalidRouteTableID.NotFound) when calling the ReplaceRoute operation
{at(3.0)} nat-boot: step=routes error line=160 status=254
{at(3.1)} nat-boot: step=routes launch abandoned
{at(3.2)} nat-boot: complete-lifecycle-action ABANDON
not-a-time nat-boot: step=identity start
"""


def test_lines_in_the_format_are_read_and_others_ignored() -> None:
    lines = bootlog.parse(LOG)
    assert [(line.step, line.message) for line in lines] == [
        ("identity", "start"),
        ("identity", "done"),
        ("routes", "start"),
        ("routes", "rtb-1 -> eni-2"),
        ("routes", "error line=160 status=254"),
        ("routes", "launch abandoned"),
        (None, "complete-lifecycle-action ABANDON"),
    ]
    assert lines[0].time == datetime(2026, 11, 26, 21, 50, 1, tzinfo=UTC)
    assert [line.verb for line in lines[3:5]] == ["rtb-1", "error"]


def test_start_and_done_make_a_finished_step_and_error_fails_the_running_one() -> None:
    identity, routes = bootlog.steps(bootlog.parse(LOG))
    assert (identity.name, identity.status, identity.start, identity.end) == ("identity", "done", when(1.0), when(1.25))
    assert identity.seconds == 0.25
    assert (routes.status, routes.message, routes.seconds) == ("error", "error line=160 status=254", 1.0)
    # what the step logged in between is a note; a line after it closed belongs to no run
    assert routes.notes == ("rtb-1 -> eni-2",)


def test_an_error_without_a_start_line_is_a_failed_step_of_its_own() -> None:
    (setup,) = bootlog.steps(bootlog.parse(f"{at(0.5)} nat-boot: step=setup error line=12 status=1\n"))
    assert (setup.name, setup.status, setup.start, setup.end) == ("setup", "error", None, when(0.5))
    assert setup.seconds is None


def test_a_step_without_a_closing_line_is_still_running() -> None:
    text = f"{at(1.0)} nat-boot: step=identity start\n{at(1.1)} nat-boot: step=identity done\n"
    text += f"{at(2.0)} nat-boot: step=routes start\n"
    routes = bootlog.step_times(text)["routes"]
    assert (routes.status, routes.start, routes.end, routes.seconds) == ("running", when(2.0), None, None)


def test_step_times_keep_a_steps_latest_run_in_first_seen_order() -> None:
    runs = [(1, "a", "start"), (2, "a", "done"), (3, "b", "start"), (4, "b", "done"), (5, "a", "start")]
    text = "".join(f"{at(t)} nat-boot: step={step} {verb}\n" for t, step, verb in runs)
    assert len(bootlog.steps(bootlog.parse(text))) == 3
    times = bootlog.step_times(text)
    assert list(times) == ["a", "b"]
    assert (times["a"].status, times["a"].start) == ("running", when(5))


def test_the_boot_scripts_own_log_and_step_functions_write_what_the_parser_reads() -> None:
    script = BOOT_SCRIPT_PATH.read_text()
    functions = "".join(re.search(rf"^{name}\(\) {{\n.*?^}}\n", script, re.M | re.S)[0] for name in ("log", "step"))
    run = f'{functions}step routes log "rtb-1 -> eni-2"\ncurrent_step=ready\nlog "NAT ready"\n'
    out = subprocess.run(["bash", "-c", run], capture_output=True, text=True, check=True, timeout=10).stdout
    assert [(line.step, line.message) for line in bootlog.parse(out)] == [
        ("routes", "start"),
        ("routes", "rtb-1 -> eni-2"),
        ("routes", "done"),
        ("ready", "NAT ready"),
    ]
    (routes,) = bootlog.steps(bootlog.parse(out))
    assert (routes.status, routes.notes) == ("done", ("rtb-1 -> eni-2",))
