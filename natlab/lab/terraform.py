"""A Terraform working directory for one harness fixture: init, apply, plan, output, destroy.

Commands run through tftest 1.8.8 (python-terraform 0.10.1 is broken on Terraform >= 1). Two
tftest quirks are avoided: ``setup()`` is never called (its ``cleanup_on_exit`` deletes the state
on garbage collection even when destroy never ran), nor ``output(name)`` (it puts the name before
the flags): the whole output dict is read instead.

The fixture is copied to ``<repo>/.build/tf/<fixture>-<token>/``, a folder as deep below the repo
root as ``harness/fixtures/<fixture>/``, so its ``source = "../../.."`` still reaches the module.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import tftest

from natlab.lab.provider_process import AWS_PROVIDER, ProviderProcess
from natlab.lab.terraform_error import TerraformError
from natlab.resource import Resource

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "harness" / "fixtures"
WORK_ROOT = REPO_ROOT / ".build" / "tf"
MIRROR_CANDIDATES = (Path("/opt/tf-plugins"),)
PROGRESS_EVERY = 10.0
QUIET = ("-input=false", "-no-color")
#: Go's garbage collector off below a 1 GiB heap, for Terraform and the provider. Every walk of a
#: command (validate, plan, apply; destroy adds a refresh) has the aws provider validate its own
#: schema of ~1,500 resources, ~2 CPU-s of allocations, and about half of that CPU was the collector:
#: one-VPC workdir, apply+plan+plan+destroy, provider 34.2 -> 19.0 CPU-s (bench/verify_breakdown.md).
GO_RUNTIME = {"GOGC": "off", "GOMEMLIMIT": "1GiB"}


@dataclass
class Step:
    """One Terraform command as it ran."""

    phase: str
    argv: list[str]
    seconds: float
    returncode: int | None
    stdout: str
    stderr: str


def find_mirror() -> Path | None:
    """The offline provider mirror (the folder holding registry.terraform.io), if this machine has one."""
    for root in MIRROR_CANDIDATES:
        if (root / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return root
    return None


def offline_cli_config(mirror: Path) -> str:
    """A CLI config that takes hashicorp/aws from ``mirror`` and everything else from the registry."""
    return (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        "}\n"
    )


def terraform_binary() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        raise TerraformError("Terraform CLI not found on PATH; install Terraform >= 1.9")
    return binary


@contextmanager
def progress(phase: str, every: float = PROGRESS_EVERY) -> Iterator[None]:
    """Log "terraform <phase>: N s elapsed..." every ``every`` seconds while the block runs."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            logger.info("terraform %s: %.0f s elapsed...", phase, time.monotonic() - started)

    ticker = threading.Thread(target=tick, name=f"tf-{phase}-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


class TerraformWorkdir(Resource):
    """A copied fixture with its own state (a ``Resource``): ``start()`` copies it and runs init,
    ``close()`` destroys what was applied and removes the copy.

    ``env`` (e.g. ``backend.env()``) and ``tf_vars`` (e.g. ``backend.tf_vars() | {...}``) apply
    to every command. ``keep=True`` leaves the resources and the folder for debugging.
    ``shared_provider=True`` runs the commands against one
    :class:`~natlab.lab.provider_process.ProviderProcess` (emulators over plain http only).
    """

    def __init__(
        self,
        fixture: str | Path,
        tf_vars: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        keep: bool = False,
        work_root: Path = WORK_ROOT,
        shared_provider: bool = False,
    ) -> None:
        source = Path(fixture)
        self.fixture = source if source.is_absolute() else FIXTURES / source
        self.tf_vars = dict(tf_vars or {})
        self.extra_env = dict(env or {})
        self.keep = keep
        self.workdir = work_root / f"{self.fixture.name}-{uuid.uuid4().hex[:8]}"
        self.steps: list[Step] = []
        self.timings: dict[str, float] = {}
        self.shared_provider = shared_provider
        self._tf: tftest.TerraformTest | None = None
        self._provider: ProviderProcess | None = None
        self._applied = False

    # --- set-up and clean-up -----------------------------------------------------------------

    def start(self) -> Self:
        binary = terraform_binary()
        if not self.fixture.is_dir():
            raise TerraformError(f"no Terraform fixture at {self.fixture}")
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(
            self.fixture,
            self.workdir,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
        )
        self._check_relative_sources()
        env = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"} | GO_RUNTIME
        mirror = find_mirror()
        if mirror is not None:
            config = self.workdir / "terraformrc"
            config.write_text(offline_cli_config(mirror))
            env["TF_CLI_CONFIG_FILE"] = str(config)
        env |= self.extra_env
        self._tf = tftest.TerraformTest(str(self.workdir), binary=binary, env=env)
        self.init()
        if self.shared_provider:
            self._provider = ProviderProcess(self._provider_binary(), self._tf.env, self.workdir / "provider.log")
            self._tf.env["TF_REATTACH_PROVIDERS"] = self._provider.open().reattach or ""
        return self

    def close(self) -> None:
        """Destroy (if anything was applied) and remove the folder, unless ``keep``."""
        try:
            self._destroy_and_remove()
        finally:
            if self._provider is not None:
                self._provider.close()

    def _destroy_and_remove(self) -> None:
        if self.keep:
            logger.warning("keeping Terraform workdir %s (resources not destroyed)", self.workdir)
            return
        destroyed = True
        if self._applied:
            try:
                # What the state holds is what was applied: the scenarios that destroy on purpose
                # (Lab.destroy) refresh first, as a user's destroy does.
                self.destroy(refresh=False)
            except TerraformError:
                destroyed = False
                logger.exception("terraform destroy failed; keeping %s and its state", self.workdir)
                raise
            finally:
                if destroyed:
                    shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        except TerraformError:
            if exc is None:
                raise  # else the block's own failure stays the one reported (close() logged this one)

    def _provider_binary(self) -> Path:
        """The aws provider ``terraform init`` installed in this workdir."""
        found = sorted((self.workdir / ".terraform" / "providers" / AWS_PROVIDER).glob("*/*/terraform-provider-aws*"))
        if not found:
            raise TerraformError(f"terraform init installed no aws provider in {self.workdir}")
        return found[-1]

    def _check_relative_sources(self) -> None:
        """Each ``source = "../.."`` in the copy must reach the same folder as in the fixture."""
        for tf_file in self.workdir.glob("*.tf"):
            for line in tf_file.read_text().splitlines():
                key, _, value = line.partition("=")
                value = value.strip().strip('"')
                if key.strip() == "source" and value.startswith("."):
                    original = (self.fixture / value).resolve()
                    copied = (self.workdir / value).resolve()
                    if original != copied:
                        raise TerraformError(
                            f"{tf_file.name}: source {value!r} reaches {copied} from the copy but "
                            f"{original} from the fixture; keep fixtures 3 levels below the repo root"
                        )

    # --- commands ----------------------------------------------------------------------------

    def init(self) -> str:
        return self._run("init", "init", *QUIET).stdout

    def apply(self, targets: list[str] | None = None, **tf_vars: Any) -> str:
        """terraform apply -auto-approve with the workdir's variables plus ``tf_vars``.

        ``targets`` (``-target=...``) is for a first stage when a for_each key is unknown at plan.
        """
        self._applied = True  # even a failed apply may have created something
        target_args = [f"-target={t}" for t in targets or []]
        phase = "apply-targets" if targets else "apply"
        args = [*QUIET, "-auto-approve", *target_args, *self._vars(tf_vars)]
        return self._run(phase, "apply", *args).stdout

    def has_changes(self, **tf_vars: Any) -> bool:
        """terraform plan -detailed-exitcode: True when the plan is not empty."""
        step = self._run("plan", "plan", *QUIET, "-detailed-exitcode", *self._vars(tf_vars))
        return step.returncode == 2

    def plan_json(self, **tf_vars: Any) -> tftest.TerraformPlanOutput:
        """The parsed JSON plan (``resource_changes``, ``planned_values``...)."""
        assert self._tf is not None
        with self._timed("plan-json"):
            return self._tf.plan(output=True, tf_vars=self.tf_vars | tf_vars)

    def outputs(self) -> dict[str, Any]:
        """All root outputs as plain values (``terraform output -json``)."""
        assert self._tf is not None
        with self._timed("output"):
            raw = self._tf.output()
        return {name: raw[name] for name in raw}

    def destroy(self, refresh: bool = True, **tf_vars: Any) -> str:
        """terraform destroy; ``refresh=False`` trusts the state (one walk fewer: the clean-up's way)."""
        no_refresh = () if refresh else ("-refresh=false",)
        step = self._run("destroy", "destroy", *QUIET, "-auto-approve", *no_refresh, *self._vars(tf_vars))
        self._applied = False
        return step.stdout

    # --- diagnostics -------------------------------------------------------------------------

    @property
    def provider_pid(self) -> int | None:
        """The shared provider process's id (None without ``shared_provider`` or once closed)."""
        return self._provider.pid if self._provider is not None else None

    def transcript(self, last: int | None = None) -> str:
        """What ran, how long it took, and what it printed (for a failed test's report)."""
        parts = []
        for step in self.steps[-last:] if last else self.steps:
            parts.append(
                f"$ (cd {self.workdir} && terraform {' '.join(step.argv)})\n"
                f"# exit {step.returncode} after {step.seconds:.1f} s\n"
                f"{step.stdout}\n{step.stderr}"
            )
        return "\n".join(parts)

    def reproduce_command(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in sorted(self._env_for_humans().items()))
        return f"cd {self.workdir} && env {env} terraform apply {' '.join(self._vars({}))}"

    def _env_for_humans(self) -> dict[str, str]:
        assert self._tf is not None
        wanted = ("TF_CLI_CONFIG_FILE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        return {k: v for k, v in self._tf.env.items() if k in wanted}

    # --- helpers -----------------------------------------------------------------------------

    def _vars(self, extra: Mapping[str, Any]) -> list[str]:
        return tftest.parse_args(tf_vars=self.tf_vars | dict(extra))

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        logger.info("terraform %s in %s", phase, self.workdir.name)
        try:
            with progress(phase):
                yield
        finally:
            elapsed = time.monotonic() - started
            self.timings[phase] = elapsed
            logger.info("terraform %s: done in %.1f s", phase, elapsed)

    def _run(self, phase: str, command: str, *args: str) -> Step:
        assert self._tf is not None, "start() the workdir first"
        started = time.monotonic()
        with self._timed(phase):
            try:
                result = self._tf.execute_command(command, *args)
                step = Step(phase, [command, *args], 0.0, result.retcode, result.out, result.err or "")
            except tftest.TerraformTestError as error:
                stderr = error.args[1] if len(error.args) > 1 else ""
                step = Step(phase, [command, *args], 0.0, 1, str(error.args[0]), stderr or "")
            except (OSError, subprocess.SubprocessError) as error:
                step = Step(phase, [command, *args], 0.0, None, "", str(error))
        step.seconds = time.monotonic() - started
        self.steps.append(step)
        if step.returncode not in (0, 2) or (step.returncode == 2 and "-detailed-exitcode" not in args):
            raise TerraformError(
                f"terraform {phase} failed (exit {step.returncode}) in {self.workdir}:\n{step.stderr[-4000:]}",
                self.transcript(last=1),
            )
        return step
