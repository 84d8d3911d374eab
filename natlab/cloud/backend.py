"""Where the harness's AWS lives: moto in-process (default), a LocalStack edge, or real AWS.

Every backend is a :class:`natlab.resource.Resource`: ``with MotoBackend() as backend: ...``. Use
:func:`make_backend` to build one from the pytest options. :class:`MotoBackend` is the only place
moto's server is started and reset.
"""

from __future__ import annotations

import abc
import logging
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Self

import botocore.exceptions

from natlab.cloud import serial_wsgi
from natlab.cloud.aws_sweep import RUN_ID_TAG, SWEEP_STEPS
from natlab.cloud.clients import EMULATOR_CREDENTIALS, aws_client
from natlab.cloud.serial_wsgi import SerializedWsgi
from natlab.resource import Resource
from natlab.waiting import wait_until

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
REQUIRED_SERVICES = ("ec2", "autoscaling", "iam", "sts", "cloudwatch", "sns")
#: moto's own Amazon Linux 2023 arm64 image in us-east-1 (the module's AMI lookup is for real AWS).
MOTO_AL2023_ARM64_AMI = "ami-08a311a6aaa3cd94a"


class BackendError(RuntimeError):
    """The backend cannot serve the harness (misconfigured, unreachable, or lacking a service)."""


class Backend(Resource, abc.ABC):
    """An AWS the harness can talk to through boto3, the aws CLI and Terraform."""

    name: str = "abstract"
    #: A named profile of the user's AWS config (real AWS only).
    profile: str | None = None

    def __init__(self, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    @property
    @abc.abstractmethod
    def endpoint_url(self) -> str | None:
        """One endpoint for all services, or None for real AWS."""

    def credentials(self) -> dict[str, str]:
        """Static credentials for emulators; empty for real AWS (the user's own chain applies)."""
        return dict(EMULATOR_CREDENTIALS) if self.endpoint_url is not None else {}

    def env(self) -> dict[str, str]:
        """Environment for the aws CLI, a boot script, or Terraform run against this backend."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.endpoint_url:
            creds = self.credentials()
            env |= {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        return env

    def tf_vars(self) -> dict[str, str]:
        """Variables the harness fixtures take to reach this backend."""
        tf_vars = {"region": self.region}
        if self.endpoint_url:
            tf_vars["endpoint_url"] = self.endpoint_url
        return tf_vars

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for ``service`` (cached per service when no extra config is given)."""
        with self._clients_lock:
            if not config and service in self._clients:
                return self._clients[service]
            client = aws_client(
                service, endpoint_url=self.endpoint_url, region=self.region, profile=self.profile, **config
            )
            if not config:
                self._clients[service] = client
            return client

    def reset(self) -> None:
        """Forget all resources between tests, where the backend can."""
        logger.debug("%s backend keeps its state on reset", self.name)

    def close(self) -> None:
        """Release what start() took. Safe to call twice and after a failed start."""
        logger.debug("%s backend has nothing to release", self.name)


# --- moto ----------------------------------------------------------------------------------------


class MotoBackend(Backend):
    """moto's server in this process on 127.0.0.1 (free port), with :mod:`natlab.cloud.moto_fixes`.

    The fixes patch moto's classes for the whole process, not this server alone: once one
    MotoBackend has started, every moto in the process (another server, ``mock_aws``) has them.

    It is also a LocalStack-compatible edge: one endpoint for every service, so
    ``localstack_client.session.Session(localstack_host=backend.localstack_host)`` works against it.
    """

    name = "moto"

    def __init__(self, region: str = DEFAULT_REGION, host: str = "127.0.0.1") -> None:
        super().__init__(region)
        self.host = host
        self.port: int | None = None
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise BackendError("MotoBackend is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def localstack_host(self) -> str:
        """``host:port`` in the form localstack_client's LOCALSTACK_HOST expects."""
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return super().env() | {"LOCALSTACK_HOST": self.localstack_host}

    def start(self) -> Self:
        from moto.server import ThreadedMotoServer

        from natlab.cloud import moto_fixes, moto_speed

        moto_fixes.apply_all()
        moto_speed.apply()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self._server.start()
        self._server._server.app = SerializedWsgi(self._server._server.app)  # see serial_wsgi.py
        self.port = self._server.get_host_and_port()[1]
        serial_wsgi.serving(self.endpoint_url, self._server._server.app)
        wait_until(
            self._ping,
            what=f"answer from moto at {self.endpoint_url}",
            timeout=10,
            interval=0.02,
            max_interval=0.5,
            retry_on=(OSError,),
        )
        logger.info("moto %s ready at %s", _moto_version(), self.endpoint_url)
        return self

    def _ping(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2) as response:
            response.read()
        return True

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset), the lifecycle actions and reboots the fixes
        recorded, and the warm pools."""
        from natlab.cloud import moto_fixes, reboots, warm_pool

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            response.read()
        moto_fixes.LIFECYCLE.clear()
        warm_pool.WARM.clear()
        reboots.REBOOTS.clear()

    def close(self) -> None:
        server, self._server = self._server, None
        if self.port is not None:
            serial_wsgi.serving(self.endpoint_url, None)
        if server is not None:
            try:
                server.stop()
            except Exception:
                logger.warning("stopping moto failed", exc_info=True)
        self.port = None


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


# --- LocalStack ----------------------------------------------------------------------------------

# One cheap read call per service the harness needs.
_PROBES: dict[str, Callable[[Any], object]] = {
    "ec2": lambda c: c.describe_vpcs(MaxResults=5),
    "autoscaling": lambda c: c.describe_auto_scaling_groups(MaxRecords=1),
    "iam": lambda c: c.list_roles(MaxItems=1),
    "sts": lambda c: c.get_caller_identity(),
    "cloudwatch": lambda c: c.describe_alarms(MaxRecords=1),
    "sns": lambda c: c.list_topics(),
}


class LocalStackBackend(Backend):
    """A running LocalStack edge (opt-in: ``--backend localstack --endpoint-url URL``).

    start() probes every service the harness needs and fails naming those LocalStack does not
    serve (its community edition answers Auto Scaling with HTTP 501). reset() is a no-op: the
    harness names resources per run instead.
    """

    name = "localstack"

    def __init__(
        self,
        endpoint_url: str = "http://127.0.0.1:4566",
        region: str = DEFAULT_REGION,
        services: Iterable[str] = REQUIRED_SERVICES,
    ) -> None:
        super().__init__(region)
        self._endpoint_url = endpoint_url.rstrip("/")
        self.services = tuple(services)

    @property
    def endpoint_url(self) -> str:
        return self._endpoint_url

    def start(self) -> Self:
        self.check()
        logger.info("LocalStack at %s serves %s", self.endpoint_url, ", ".join(self.services))
        return self

    def check(self, **config: Any) -> None:
        """Raises :class:`BackendError` naming each needed service the edge does not serve.

        ``config`` goes to the probing clients (e.g. short timeouts at start-up). An edge nobody
        answers on is named as such once, not once per service.
        """
        unreachable = self._unreachable()
        if unreachable:
            raise BackendError(
                f"nothing answers at {self.endpoint_url} ({unreachable}); start LocalStack there or fix the URL"
            )
        probes = {service: self._probe(service, **config) for service in self.services}
        problems = [f"{service} ({problem})" for service, problem in probes.items() if problem]
        if problems:
            raise BackendError(
                f"LocalStack at {self.endpoint_url} does not serve {', '.join(problems)}; "
                f"the harness needs {', '.join(self.services)}"
            )

    def _unreachable(self) -> str | None:
        """Why nothing accepts a connection at the edge's address, or None."""
        url = urllib.parse.urlsplit(self.endpoint_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname or "localhost", port), timeout=2).close()
        except OSError as error:
            return error.strerror or type(error).__name__
        return None

    def _probe(self, service: str, **config: Any) -> str | None:
        """None when ``service`` answers a read call as AWS would, else a short reason."""
        client = self.client(service, retries={"mode": "standard", "max_attempts": 1}, **config)
        try:
            _PROBES[service](client)
        except botocore.exceptions.ClientError as error:
            meta = error.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            message = error.response.get("Error", {}).get("Message") or str(error)
            return f"HTTP {status}: {message}"
        except botocore.exceptions.EndpointConnectionError as error:
            return f"connection error: {error}"
        except botocore.exceptions.BotoCoreError as error:
            return f"{type(error).__name__}: {error}"
        except Exception as error:  # an answer botocore cannot read: not an AWS API
            return f"answers, but not as AWS does ({type(error).__name__}: {error})"
        return None


# --- real AWS ------------------------------------------------------------------------------------


class AwsBackend(Backend):
    """Real AWS (opt-in: ``--backend aws --region R --aws-confirm-costs``).

    Refuses to start without both: the harness launches billable instances and Elastic IPs.
    Everything the harness creates carries the tag ``natlab:run-id=<run_id>``; close() and
    sweep() delete leftovers with that tag, best effort.

    Only tested here against moto (``endpoint_url`` exists for that test alone), never against
    AWS itself.
    """

    name = "aws"

    def __init__(
        self,
        region: str | None,
        run_id: str,
        confirm_costs: bool = False,
        profile: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        super().__init__(region or "")
        self.run_id = run_id
        self.confirm_costs = confirm_costs
        self.profile = profile
        self._endpoint_url = endpoint_url
        self._started = False

    @property
    def endpoint_url(self) -> str | None:
        return self._endpoint_url

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        return env

    def start(self) -> Self:
        if not self.confirm_costs:
            raise BackendError(
                "refusing to run against real AWS without --aws-confirm-costs: the harness "
                "launches billable EC2 instances and Elastic IPs"
            )
        if not self.region:
            raise BackendError("--backend aws needs --region (for example --region us-east-1)")
        identity = self.client("sts").get_caller_identity()
        logger.info("real AWS account %s in %s, run id %s", identity["Account"], self.region, self.run_id)
        self._started = True
        return self

    def reset(self) -> None:
        self.sweep()

    def close(self) -> None:
        if self._started:
            self._started = False
            self.sweep()

    def sweep(self, run_id: str | None = None) -> list[str]:
        """Delete everything tagged ``natlab:run-id=<run_id>``, best effort; return what went.

        Order: Auto Scaling groups, instances, alarms, launch templates, Elastic IPs, ENIs,
        security groups, IAM roles (with their instance profiles). A failure on one resource is
        logged and the sweep goes on.
        """
        run_id = run_id or self.run_id
        if not run_id:
            raise BackendError("sweep needs a run id; refusing to sweep untagged resources")
        deleted: list[str] = []
        for step in SWEEP_STEPS:
            try:
                step(self, run_id, deleted)
            except Exception:
                logger.warning("sweep step %s failed", step.__name__, exc_info=True)
        logger.info("swept %d resources tagged %s=%s", len(deleted), RUN_ID_TAG, run_id)
        return deleted


def make_backend(
    name: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    run_id: str = "",
    aws_confirm_costs: bool = False,
    aws_profile: str | None = None,
) -> Backend:
    """Build a (not yet started) backend from the pytest options ``--backend`` and friends."""
    if name == "moto":
        return MotoBackend(region=region or DEFAULT_REGION)
    if name == "localstack":
        if not endpoint_url:
            raise BackendError("--backend localstack needs --endpoint-url (e.g. http://127.0.0.1:4566)")
        return LocalStackBackend(endpoint_url, region=region or DEFAULT_REGION)
    if name == "aws":
        return AwsBackend(region, run_id, confirm_costs=aws_confirm_costs, profile=aws_profile)
    raise BackendError(f"unknown backend {name!r}: choose moto, localstack or aws")
