"""`pytest harness`: options, the emulated (or real) AWS, and what a failing test gets attached."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from natlab.cloud.backend import Backend, BackendError, MotoBackend, make_backend
from natlab.cloud.dataplane_lab import CloudLab, MotoEc2, build_cloud, ec2_client
from natlab.cloud.netns import PREFIX, RUN_ID, cleanup_all, cleanup_stale, unavailable_reason
from natlab.lab.failover import FailoverResult
from natlab.lab.failover_report import report_failover
from natlab.lab.lab import Lab, LabConfig
from natlab.lab.settings import HarnessSettings, SettingsError

logger = logging.getLogger("natlab")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("natlab", "NAT failover harness")
    group.addoption(
        "--backend",
        default="moto",
        choices=("moto", "localstack", "aws"),
        help="where AWS lives: embedded moto server (default), a LocalStack edge, or real AWS",
    )
    group.addoption(
        "--endpoint-url",
        default=None,
        help="the LocalStack-compatible edge for --backend localstack (e.g. http://127.0.0.1:4566)",
    )
    group.addoption("--region", default=None, help="AWS region (default us-east-1; required with --backend aws)")
    group.addoption(
        "--aws-confirm-costs",
        action="store_true",
        help="with --backend aws: yes, launch real instances in my account and pay for them",
    )
    group.addoption(
        "--sla", type=float, default=180.0, help="seconds from NAT failure to routes on the replacement (default 180)"
    )
    group.addoption(
        "--boot-delay",
        type=float,
        default=0.0,
        help="modelled seconds from instance launch to user data start (real AWS: ~26-29 s)",
    )
    group.addoption(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where failover timelines (table, SVG/HTML, JSON) are written (default ./reports)",
    )
    group.addoption(
        "--keep", action="store_true", help="leave the lab up after the run for debugging, and print how to reach it"
    )


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> HarnessSettings:
    try:
        return HarnessSettings.from_options(pytestconfig)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_configure(config: pytest.Config) -> None:
    # Bad options fail at start-up, before anything is created.
    try:
        HarnessSettings.from_options(config)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # the main process (xdist workers have no terminal)
        handler = _TerminalProgress(reporter)
        logging.getLogger("natlab.lab.terraform").addHandler(handler)
        logging.getLogger("natlab.lab.terraform").setLevel(logging.INFO)


class _TerminalProgress(logging.Handler):
    """Shows Terraform's progress lines ("terraform apply: 20 s elapsed...") while long phases run."""

    def __init__(self, reporter: Any) -> None:
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.write_line(f"natlab: {record.getMessage()}")


@pytest.fixture(scope="session")
def run_id() -> str:
    return f"natlab-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def backend(settings: HarnessSettings, run_id: str) -> Iterator[Backend]:
    try:
        chosen = make_backend(
            settings.backend,
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            run_id=run_id,
            aws_confirm_costs=settings.aws_confirm_costs,
        )
        chosen.start()
    except BackendError as error:
        pytest.exit(f"natlab: {error}", returncode=4)
    try:
        yield chosen
    finally:
        chosen.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An interrupted run must not leave namespaces, veths or processes behind either.
    if not session.config.getoption("--keep", default=False):
        # Only this run's namespaces and those whose creating process died: a concurrent run keeps its own.
        removed = cleanup_all(f"{PREFIX}{RUN_ID}-") + cleanup_stale()
        if removed:
            logger.warning("natlab: removed leftover namespaces %s", removed)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and call.when == "call":
        lab = getattr(item, "natlab_lab", None)
        if lab is not None:
            for title, text in lab.diagnostics().items():
                report.sections.append((f"natlab: {title}", text))
    return report


def _hold_for_debugging(settings: HarnessSettings, config: LabConfig, lab: Lab) -> None:
    """--keep: the emulator lives in this process, so the lab stays up while the run waits for Enter."""
    info = f"--keep: the {config.fixture} lab is up\n{lab.how_to_reach()}\n"
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    with (settings.report_dir / KEPT_LABS).open("a") as kept:  # listed again in the terminal summary
        kept.write(info + "\n")
    try:
        with open("/dev/tty") as tty_in, open("/dev/tty", "w") as tty_out:
            tty_out.write(f"\n{info}Press Enter to tear it down... ")
            tty_out.flush()
            tty_in.readline()
    except OSError:
        logger.warning("--keep without a terminal: the lab's files stay, the emulator ends with this run")


def _lab_config(name: str, zones: list[str]) -> LabConfig:
    # Elastic IPs: moto gives launched instances no public IP, so egress needs one to be seen at all.
    return LabConfig("vpc_nat", name=name, tf_vars={"elastic_ip": "create", "availability_zones": zones})


def _lab(backend: Backend, settings: HarnessSettings, run_id: str, config: LabConfig) -> Iterator[Lab]:
    missing = unavailable_reason()
    if missing and backend.endpoint_url is not None:
        pytest.skip(f"emulated instances boot in network namespaces, which are unavailable here: {missing}")
    backend.reset()
    with Lab(backend, config, settings, run_id) as lab:
        try:
            yield lab
        finally:
            if settings.keep:
                _hold_for_debugging(settings, config, lab)


@pytest.fixture(scope="module")
def one_zone_lab(backend: Backend, settings: HarnessSettings, run_id: str) -> Iterator[Lab]:
    yield from _lab(backend, settings, run_id, _lab_config("natlab-1z", ONE_ZONE))


@pytest.fixture(scope="module")
def three_zone_lab(backend: Backend, settings: HarnessSettings, run_id: str) -> Iterator[Lab]:
    yield from _lab(backend, settings, run_id, _lab_config("natlab-3z", THREE_ZONES))


@pytest.fixture(autouse=True)
def _attach_lab_to_item(request: pytest.FixtureRequest) -> None:
    # Lets the report hook find the lab of a failing test, to attach its logs.
    for name in ("one_zone_lab", "three_zone_lab"):
        if name in request.fixturenames:
            request.node.natlab_lab = request.getfixturevalue(name)


KEPT_LABS = "kept-labs.txt"
ONE_ZONE = ["us-east-1a"]
THREE_ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
TIMELINE_PROPERTY = "natlab_failover_timeline"


@pytest.fixture
def record_failover(request: pytest.FixtureRequest):
    """Writes a failover's report; its text travels with the test report (xdist workers too)."""

    def record(lab: Lab, result: FailoverResult, name: str) -> None:
        text, _ = report_failover(lab, result, name)
        request.node.user_properties.append((TIMELINE_PROPERTY, text))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        texts = [value for key, value in report.user_properties if key == TIMELINE_PROPERTY]
        if texts:
            _collected_timelines.extend(texts)


_collected_timelines: list[str] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for text in _collected_timelines:
        terminalreporter.write_sep("-", "failover timeline")
        terminalreporter.write_line(text)
    kept = Path(config.getoption("--report-dir", default=Path("reports"))) / KEPT_LABS
    if config.getoption("--keep", default=False) and kept.exists():
        terminalreporter.write_sep("-", "labs left up (--keep)")
        terminalreporter.write_line(kept.read_text())
        kept.unlink()


# --- Emulators for the unit-level tests of the harness's own parts --------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoBackend]:
    """A MotoBackend (with natlab's moto fixes) for one test module."""
    with MotoBackend() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoBackend) -> MotoBackend:
    """The module's moto, emptied before each test."""
    moto_server.reset()
    return moto_server


@pytest.fixture(scope="module")
def moto_ec2() -> Iterator[MotoEc2]:
    """A plain moto server (no natlab fixes applied by it) and its EC2 client, for data-plane tests."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        yield MotoEc2(ec2_client(endpoint), endpoint)
    finally:
        server.stop()


@pytest.fixture
def lab(moto_ec2: MotoEc2) -> CloudLab:
    """A fresh VPC with a public and a private subnet and two NAT instances (data-plane tests)."""
    moto_ec2.reset()
    return build_cloud(moto_ec2.client)
