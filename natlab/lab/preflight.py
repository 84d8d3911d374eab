"""What the harness checks when a session starts, before any test runs: one clear line per problem.

A wrong ``--endpoint-url`` or a missing Terraform used to surface a minute into the run, as a
traceback in the first lab. Here each is found at start-up and named with what to do about it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from natlab.cloud.backend import BackendError, LocalStackBackend
from natlab.cloud.netns_available import unavailable_reason
from natlab.lab.settings import HarnessSettings

#: The module's own `required_version` (versions.tf); the harness's fixtures use the module.
TERRAFORM_MINIMUM = (1, 9, 0)
#: A probe of an endpoint gives up quickly: nothing may wait a minute at start-up.
PROBE_TIMEOUTS = {"connect_timeout": 2, "read_timeout": 5}


def problems(settings: HarnessSettings) -> list[str]:
    """Every reason the run cannot go ahead, each a sentence that says what to do."""
    found = [terraform_problem(), backend_problem(settings)]
    return [problem for problem in found if problem]


def terraform_problem() -> str | None:
    """None when a Terraform new enough for the module is on PATH."""
    binary = shutil.which("terraform")
    minimum = ".".join(map(str, TERRAFORM_MINIMUM))
    if binary is None:
        return f"Terraform CLI not found on PATH; install Terraform >= {minimum} (make bootstrap checks it)"
    try:
        answer = subprocess.run(
            [binary, "version", "-json"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        version = json.loads(answer)["terraform_version"]
    except (subprocess.SubprocessError, OSError, ValueError, KeyError) as error:
        return f"{binary} does not say its version (`terraform version -json`: {error}); install Terraform >= {minimum}"
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    if numbers < TERRAFORM_MINIMUM:
        return f"Terraform {version} at {binary} is too old: the module needs >= {minimum}; install a newer one"
    return None


def backend_problem(settings: HarnessSettings) -> str | None:
    """None when the ``--backend`` can serve the harness (the embedded emulator always can)."""
    if settings.backend != "localstack" or settings.endpoint_url is None:
        return None
    edge = LocalStackBackend(settings.endpoint_url, region=settings.region or "us-east-1")
    try:
        edge.check(**PROBE_TIMEOUTS)
    except BackendError as error:
        return f"--endpoint-url {settings.endpoint_url}: {error}"
    return None


def namespaces_note() -> str | None:
    """A start-up line when the lab scenarios will skip here, with how to make them run."""
    reason = unavailable_reason()
    if reason is None:
        return None
    return f"natlab: the lab scenarios will skip: {reason}"
