"""Opening the harness's AWS and its labs as plain context managers: the same code for pytest, benches and scripts.

    settings = HarnessSettings(boot_delay=30)
    with open_lab(vpc_nat_lab("mylab", ONE_ZONE), settings) as lab:   # its own emulator
        ...

    with open_backend(settings, run_id) as backend:                    # one emulator, labs in turn
        with open_lab(config, settings, backend=backend, run_id=run_id) as lab:
            ...

The pytest plugin's fixtures are thin wrappers over these two.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from natlab.cloud.backend import Backend, make_backend
from natlab.cloud.netns_available import unavailable_reason
from natlab.lab.lab import Lab, LabConfig
from natlab.lab.settings import HarnessSettings

logger = logging.getLogger(__name__)

ONE_ZONE = ("us-east-1a",)
THREE_ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
#: In the report folder: every lab held up by ``--keep`` in this run, with how to reach it.
KEPT_LABS_FILE = "kept-labs.txt"


class LabUnavailable(RuntimeError):
    """This machine cannot run the lab (the message says why: tests skip with it)."""


def new_run_id() -> str:
    """A fresh run id: tags everything a run creates, so a sweep removes exactly that run's leftovers."""
    return f"natlab-{uuid.uuid4().hex[:8]}"


def vpc_nat_lab(name: str, zones: Sequence[str]) -> LabConfig:
    """The module in ``harness/fixtures/vpc_nat``, one NAT per zone, each with an Elastic IP.

    Elastic IPs because moto gives launched instances no public IP: egress needs one to be seen at all.
    """
    return LabConfig("vpc_nat", name=name, tf_vars={"elastic_ip": "create", "availability_zones": list(zones)})


def standby_lab_config(name: str, zones: Sequence[str]) -> LabConfig:
    """:func:`vpc_nat_lab` with a standby per zone (``takeover = "standby"``) instead of peers."""
    config = vpc_nat_lab(name, zones)
    return LabConfig(config.fixture, name=name, tf_vars=config.tf_vars | {"takeover": "standby"})


@contextlib.contextmanager
def open_backend(settings: HarnessSettings, run_id: str) -> Iterator[Backend]:
    """The AWS ``settings`` name (``--backend``), started; stopped (or swept, on real AWS) at the end.

    Raises :class:`natlab.cloud.backend.BackendError` when it cannot serve the harness.
    """
    backend = make_backend(
        settings.backend,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        run_id=run_id,
        aws_confirm_costs=settings.aws_confirm_costs,
    )
    with backend:
        yield backend


def lab_unavailable_reason(backend: Backend) -> str | None:
    """Why a lab cannot run on ``backend`` here, or None.

    An emulator runs no instance: each one boots here in network namespaces, so they are needed.
    """
    missing = unavailable_reason()
    if missing and backend.endpoint_url is not None:
        return f"emulated instances boot in network namespaces, which are unavailable here: {missing}"
    return None


@contextlib.contextmanager
def open_lab(
    config: LabConfig,
    settings: HarnessSettings,
    *,
    backend: Backend | None = None,
    run_id: str | None = None,
) -> Iterator[Lab]:
    """A started :class:`Lab` of ``config``; destroyed at the end (after a hold, with ``settings.keep``).

    Without ``backend`` the lab gets its own, from ``settings``; a given one is reset first (one lab
    at a time on it). Raises :class:`LabUnavailable` when this machine cannot run the lab.
    """
    run_id = run_id or new_run_id()
    with contextlib.ExitStack() as stack:
        if backend is None:
            backend = stack.enter_context(open_backend(settings, run_id))
        reason = lab_unavailable_reason(backend)
        if reason:
            raise LabUnavailable(reason)
        backend.reset()
        with Lab(backend, config, settings, run_id) as lab:
            try:
                yield lab
            finally:
                if settings.keep:
                    hold_for_debugging(lab, settings.report_dir)


def hold_for_debugging(lab: Lab, report_dir: Path) -> None:
    """``--keep``: the emulator lives in this process, so the lab stays up until Enter is pressed.

    How to reach it is also appended to ``report_dir / KEPT_LABS_FILE`` (pytest lists it at the end).
    """
    info = f"--keep: the {lab.config.fixture} lab {lab.config.name} is up\n{lab.how_to_reach()}\n"
    report_dir.mkdir(parents=True, exist_ok=True)
    with (report_dir / KEPT_LABS_FILE).open("a") as kept:
        kept.write(info + "\n")
    try:
        with open("/dev/tty") as tty_in, open("/dev/tty", "w") as tty_out:
            tty_out.write(f"\n{info}Press Enter to tear it down... ")
            tty_out.flush()
            tty_in.readline()
    except OSError:
        logger.warning("--keep without a terminal: the lab's files stay, the emulator ends with this run")
