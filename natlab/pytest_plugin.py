"""natlab's pytest plugin, loaded by ``pytest_plugins = ("natlab.pytest_plugin",)`` in harness/conftest.py.

- Options: the rows of :class:`~natlab.lab.settings.HarnessSettings`, in one group ("natlab"). They
  are parsed once, in ``pytest_configure`` (a bad value stops pytest there, with one line naming
  the option), and kept in ``config.stash[SETTINGS]``.
- Fixtures: thin wrappers over :mod:`natlab.lab.open` (``backend``, ``one_zone_lab``,
  ``three_zone_lab``), ``record_failover``, and the unit-level ``moto_server``/``aws``/``lab``.
- Reports: a failing lab test gets the lab's diagnostics; failover timelines travel as
  ``user_properties`` (so through pytest-xdist too) and are printed at the end; namespaces of the run
  are removed when the session finishes (unless ``--keep``).

The embedded emulator (``--backend moto``, and ``moto_server`` for the unit level) is a
:class:`~natlab.cloud.backend.MotoBackend`, whose moto fixes (:mod:`natlab.cloud.moto_fixes`) patch
moto for the whole process once any MotoBackend has started.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from natlab.cloud import region_lists  # noqa: F401  (first: before moto's EC2 models are imported)
from natlab.cloud.backend import Backend, BackendError, MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import CloudLab, build_cloud
from natlab.cloud.netns_cleanup import cleanup_all, cleanup_stale
from natlab.cloud.netns_names import PREFIX, RUN_ID
from natlab.lab import preflight
from natlab.lab.failover import FailoverResult
from natlab.lab.failover_report import failover_row, report_failover
from natlab.lab.lab import Lab
from natlab.lab.open import (
    KEPT_LABS_FILE,
    ONE_ZONE,
    THREE_ZONES,
    lab_unavailable_reason,
    new_run_id,
    open_backend,
    open_lab,
    standby_lab_config,
    vpc_nat_lab,
)
from natlab.lab.settings import OPTION_GROUP, HarnessSettings, SettingsError
from natlab.report import fault_matrix

logger = logging.getLogger("natlab")

#: The run's settings, parsed once from the command line.
SETTINGS = pytest.StashKey[HarnessSettings]()
#: The lab a test uses, so a failure can attach its diagnostics.
LAB = pytest.StashKey[Lab]()
PROGRESS = pytest.StashKey[logging.Handler]()
#: The ``user_properties`` key under which a failover's timeline text travels with its test report.
TIMELINE_PROPERTY = "natlab_failover_timeline"
LAB_FIXTURES = ("one_zone_lab", "three_zone_lab", "standby_lab")
PROGRESS_LOGGER = "natlab.lab.terraform"

RecordFailover = Callable[[Lab, FailoverResult, str], None]


class RecordFault(Protocol):
    def __call__(
        self,
        injected: str,
        outcome: str,
        recovery_seconds: float | None = None,
        detail: str = "",
        counts: dict[str, int] | None = None,
    ) -> None: ...


# --- options and settings -----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(*OPTION_GROUP)
    for row in HarnessSettings.options():
        group.addoption(row.flag, **row.parser_arguments())


#: The cyclic collector's first-generation threshold in the harness's processes (Python's default: 700).
GC_THRESHOLD = (50_000, 20, 20)


@pytest.hookimpl(trylast=True)  # after the terminal reporter and the capture manager
def pytest_configure(config: pytest.Config) -> None:
    # The process serves moto, boots instances and polls: many short-lived objects beside big
    # long-lived heaps (moto's and botocore's models). Those are frozen out of the collector and
    # it runs less often: 12 % less user CPU over five unit-level harness files (two runs each).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        config.stash[SETTINGS] = HarnessSettings.from_options(config)
    except SettingsError as error:  # before anything is created
        raise pytest.UsageError(str(error)) from None
    if not hasattr(config, "workerinput"):  # once per run: xdist workers inherit the verdict
        found = preflight.problems(config.stash[SETTINGS])
        if found:
            raise pytest.UsageError("\n".join(found))
    config.stash[PROGRESS] = _TerminalProgress(config)
    progress = logging.getLogger(PROGRESS_LOGGER)
    progress.addHandler(config.stash[PROGRESS])
    progress.setLevel(logging.INFO)


def pytest_report_header(config: pytest.Config) -> str | None:
    return preflight.namespaces_note()


def pytest_unconfigure(config: pytest.Config) -> None:
    # pytest's unraisable-exception check runs after this hook: five full collections, each over a
    # heap that by now holds a lab (1.2 s of a lab worker's last seconds, py-spy). One collection
    # here finds what theirs would (its unraisable exceptions still reach pytest's hook); freezing
    # what survived leaves theirs only what is new.
    gc.collect()
    gc.freeze()
    if PROGRESS in config.stash:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(config.stash[PROGRESS])


class _TerminalProgress(logging.Handler):
    """Shows Terraform's progress lines ("terraform apply: 20 s elapsed...") live while long phases run.

    Like pytest's own live logging, it writes past the output capture. A pytest-xdist worker's
    stdout leads nowhere, so a worker writes its lines to stderr, which is the terminal's.
    """

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(logging.INFO)
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.worker = getattr(config, "workerinput", {}).get("workerid")

    def emit(self, record: logging.LogRecord) -> None:
        line = f"natlab: {record.getMessage()}"
        uncaptured = self.capture.global_and_fixture_disabled() if self.capture else contextlib.nullcontext()
        with uncaptured:
            if self.worker:
                print(f"[{self.worker}] {line}", file=sys.stderr, flush=True)
            elif self.reporter is not None:
                self.reporter.write_line(line)


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> HarnessSettings:
    """The run's settings (from the command line, checked at start-up)."""
    return pytestconfig.stash[SETTINGS]


# --- the AWS and the labs -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def run_id() -> str:
    return new_run_id()


@pytest.fixture(scope="session")
def backend(settings: HarnessSettings, run_id: str) -> Iterator[Backend]:
    """The AWS of ``--backend``, for the whole session (labs reset it in turn)."""
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(open_backend(settings, run_id))
        except BackendError as error:
            pytest.exit(f"natlab: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
        yield started


@pytest.fixture(scope="module")
def one_zone_lab(backend: Backend, settings: HarnessSettings, run_id: str) -> Iterator[Lab]:
    yield from _open_lab(backend, settings, run_id, "natlab-1z", ONE_ZONE)


@pytest.fixture(scope="module")
def three_zone_lab(backend: Backend, settings: HarnessSettings, run_id: str) -> Iterator[Lab]:
    yield from _open_lab(backend, settings, run_id, "natlab-3z", THREE_ZONES)


@pytest.fixture(scope="module")
def standby_lab(backend: Backend, settings: HarnessSettings, run_id: str) -> Iterator[Lab]:
    """One zone whose NAT has a standby (module input ``takeover = "standby"``)."""
    yield from _open_lab(backend, settings, run_id, "natlab-sb", ONE_ZONE, standby=True)


def _open_lab(
    backend: Backend, settings: HarnessSettings, run_id: str, name: str, zones: tuple[str, ...], standby: bool = False
) -> Iterator[Lab]:
    reason = lab_unavailable_reason(backend)
    if reason:
        pytest.skip(reason)
    config = standby_lab_config(name, zones) if standby else vpc_nat_lab(name, zones)
    with open_lab(config, settings, backend=backend, run_id=run_id) as lab:
        yield lab


@pytest.fixture(autouse=True)
def _remember_the_lab(request: pytest.FixtureRequest) -> None:
    # Lets the report hook find the lab of a failing test, to attach its logs.
    for name in LAB_FIXTURES:
        if name in request.fixturenames:
            request.node.stash[LAB] = request.getfixturevalue(name)


@pytest.fixture
def record_failover(request: pytest.FixtureRequest) -> RecordFailover:
    """Writes a failover's report; its text travels with the test report (xdist workers too)."""

    def record(lab: Lab, result: FailoverResult, name: str) -> None:
        text, _ = report_failover(lab, result, name)
        request.node.user_properties.append((TIMELINE_PROPERTY, text))
        request.node.user_properties.append((fault_matrix.PROPERTY, failover_row(result, name).to_json()))

    return record


@pytest.fixture
def record_fault(request: pytest.FixtureRequest) -> RecordFault:
    """Adds a row to the run's fault matrix: what the scenario injected, the outcome, the recovery time."""

    def record(
        injected: str,
        outcome: str,
        recovery_seconds: float | None = None,
        detail: str = "",
        counts: dict[str, int] | None = None,
    ) -> None:
        row = fault_matrix.FaultRow(request.node.name, injected, outcome, True, recovery_seconds, detail, counts or {})
        request.node.user_properties.append((fault_matrix.PROPERTY, row.to_json()))

    return record


# --- reports ------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    lab = item.stash.get(LAB, None)
    if report.failed and call.when == "call" and lab is not None:
        for title, text in lab.diagnostics().items():
            report.sections.append((f"natlab: {title}", text))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    reports = [report for kind in terminalreporter.stats.values() for report in kind]
    calls = sorted(
        (report for report in reports if isinstance(report, pytest.TestReport) and report.when == "call"),
        key=lambda report: report.stop,
    )
    for report in calls:
        for key, text in report.user_properties:
            if key == TIMELINE_PROPERTY:
                terminalreporter.write_sep("-", "failover timeline")
                terminalreporter.write_line(text)
    settings = config.stash.get(SETTINGS, None)
    rows = [row for report in calls for row in fault_matrix.rows_from_properties(report.user_properties, report.passed)]
    if rows and settings is not None:
        page = fault_matrix.write(settings.report_dir, rows)
        terminalreporter.write_sep("-", "fault matrix")
        terminalreporter.write_line(f"{fault_matrix.render_text(rows)}\nreport: {page}")
    kept = settings.report_dir / KEPT_LABS_FILE if settings and settings.keep else None
    if kept is not None and kept.exists():
        terminalreporter.write_sep("-", "labs left up (--keep)")
        terminalreporter.write_line(kept.read_text())
        kept.unlink()


#: What the boot script and its units write on an instance: none of it may appear on the host.
HOST_PATHS_INSTANCES_WRITE = (
    "/etc/nat-instance",
    "/var/lib/nat-instance",
    "/var/log/nat-instance-boot.log",
    "/var/log/nat-instance-watch.log",
    "/run/nat-instance",
    "/usr/local/sbin/nat-instance",
)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An interrupted run must not leave namespaces, veths or processes behind either.
    settings = session.config.stash.get(SETTINGS, None)
    if settings is None or settings.keep:
        return
    # Only this process's namespaces and those whose creating process died: a concurrent run keeps its own.
    removed = cleanup_all(f"{PREFIX}{RUN_ID}-") + cleanup_stale()
    if removed:
        logger.warning("natlab: removed leftover namespaces %s", removed)
    if not hasattr(session.config, "workerinput"):
        touched = [path for path in HOST_PATHS_INSTANCES_WRITE if Path(path).exists()]
        if touched:
            # An instance's writes belong in its own dir (natlab/cloud/overlay.py); these reached the host.
            session.config.get_terminal_writer().line(f"natlab: the host was written to: {' '.join(touched)}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- emulators for the unit-level tests of the harness's own parts ------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoBackend]:
    """One started MotoBackend for the unit-level tests of a process (xdist worker).

    moto's models are global to the process whatever the server, so one per module only cost a
    server and its per-service apps each time; tests empty it first (``aws``).
    """
    with MotoBackend() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoBackend) -> MotoBackend:
    """The worker's moto, emptied before each test."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def lab(aws: MotoBackend) -> CloudLab:
    """A fresh VPC with a public and a private subnet and two NAT instances (data-plane tests)."""
    return build_cloud(aws.client("ec2"))


@pytest.fixture
def vpc(lab: CloudLab) -> Iterator[EmulatedVpc]:
    """``lab``'s VPC with its data plane; its timeline and router state are logged for a failing test."""
    with EmulatedVpc(lab.ec2, lab.vpc_id) as emulated:
        try:
            yield emulated
        finally:  # shown by pytest when the test fails
            logger.info("timeline:\n%s", "\n".join(emulated.timeline()))
            logger.info("router kernel state:\n%s", emulated.kernel_state())
