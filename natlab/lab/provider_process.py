"""The one aws provider process that every command of a Terraform workdir attaches to."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from natlab.lab.provider_answers import ProviderAnswers
from natlab.lab.terraform_error import TerraformError
from natlab.resource import Resource
from natlab.waiting import wait_until

# Below Terraform's logger, so that the provider's start shows among the progress lines the pytest
# plugin prints live (natlab.pytest_plugin.PROGRESS_LOGGER).
logger = logging.getLogger("natlab.lab.terraform.provider_process")

AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"
#: A provider started by hand logs at TRACE unless told not to (Terraform filters what it starts itself).
PROVIDER_LOGS_OFF = dict.fromkeys(("TF_LOG", "TF_LOG_PROVIDER", "TF_LOG_SDK"), "off") | {
    f"TF_LOG_SDK_{part}": "off" for part in ("PROTO", "FRAMEWORK", "MUX", "HELPER_SCHEMA", "HELPER_RESOURCE")
}


class ProviderProcess(Resource):
    """One aws provider process that every command of a workdir attaches to (``TF_REATTACH_PROVIDERS``).

    Terraform otherwise starts the provider afresh 3 to 5 times a command (schema, validate, plan,
    apply, and refresh for destroy): on this 2-core machine each start costs ~0.5 s of CPU and up
    to 2 s of a loaded run. Attached, the same binary ``terraform init`` installed serves the same
    protocol, and every command still validates, configures and plans through it; its schema and
    the validation of its own configuration, the same at every walk, it gives once
    (:mod:`natlab.lab.provider_answers`; ``reattach`` names that relay). Only for
    emulators over plain http: configured a second time with ``AWS_CA_BUNDLE`` set, the provider
    fails ("unable to add custom RootCAs HTTPClient"), so that variable (useless without TLS) is
    left out of its environment.
    """

    def __init__(self, binary: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.binary = binary
        self.env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"} | PROVIDER_LOGS_OFF
        self.log_path = log_path
        self.reattach: str | None = None
        self.answers: ProviderAnswers | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []

    def start(self) -> Self:
        argv = [str(self.binary), "-debug"]
        setpriv = shutil.which("setpriv")
        if setpriv:  # in its own session (below), it must still not outlive a harness that is killed
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        with open(self.log_path, "w") as log:
            self._proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # an interrupt reaches Terraform, which then still needs its provider
            )
        threading.Thread(target=self._read, name="tf-provider-stdout", daemon=True).start()
        reattach = wait_until(self._reattach_config, what="aws provider's reattach config", timeout=60)
        self.answers = ProviderAnswers(reattach).open()
        self.reattach = self.answers.reattach
        logger.info("aws provider serving as pid %d", self._proc.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        answers, self.answers = self.answers, None
        if answers is not None:
            answers.close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:  # until the provider exits; keeps its pipe drained
            self._lines.append(line)

    def _reattach_config(self) -> str | None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise TerraformError(f"aws provider exited ({self._proc.returncode}); see {self.log_path}")
        for line in self._lines:
            found = re.search(r"TF_REATTACH_PROVIDERS='(.+)'", line)
            if found and AWS_PROVIDER in json.loads(found.group(1)):
                return found.group(1)
        return None
