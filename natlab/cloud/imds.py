"""IMDSv2 for one emulated instance, served inside the instance's network namespace.

Like AWS: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600) returns
a token; every ``GET`` needs a valid ``X-aws-ec2-metadata-token`` (else 401); unknown paths 404;
directories list their children (sub-directories with a trailing ``/``). With ``allow_v1`` (the
launch template's ``HttpTokens=optional``; off by default, as the module requires IMDSv2) a GET
without any token header is answered too (IMDSv1); a GET with a wrong token is still 401, as on
EC2. The server listens on
``169.254.169.254:80`` on the namespace's ``lo`` (the address is added there), through a socket
created by a thread that ``setns()``-ed into the namespace; the server threads stay on the host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from natlab.resource import Resource

from .clients import EMULATOR_CREDENTIALS
from .netns import Namespace

log = logging.getLogger(__name__)

IMDS_ADDRESS = "169.254.169.254"
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
ROLE_NAME = "natlab-nat-instance"
"""The instance role IMDS names (the emulator does not carry the launch template's profile over)."""
CREDENTIALS_LIFETIME = timedelta(hours=6)
"""How far ahead the served role credentials expire (EC2 serves ones valid for hours; estimate)."""

Tree = dict[str, "Tree | str"]


@dataclass(frozen=True)
class InstanceIdentity:
    """What IMDS tells one instance about itself (taken from the emulator's DescribeInstances)."""

    instance_id: str
    region: str
    az: str
    mac: str
    interface_id: str
    private_ip: str
    subnet_id: str
    vpc_id: str
    vpc_cidrs: tuple[str, ...]
    subnet_cidr: str = ""
    """The subnet's CIDR (``subnet-ipv4-cidr-block``); the sandbox uses its prefix length."""
    ami_id: str = "ami-00000000000000000"
    instance_type: str = "t4g.nano"

    @property
    def prefix_len(self) -> int:
        """Prefix length of the subnet (24 when the subnet CIDR is unknown)."""
        return int(self.subnet_cidr.split("/")[1]) if "/" in self.subnet_cidr else 24

    def metadata_tree(self) -> Tree:
        """The ``/latest/meta-data/`` tree served for this identity."""
        hostname = f"ip-{self.private_ip.replace('.', '-')}.{self.region}.compute.internal"
        mac_tree: Tree = {
            "device-number": "0",
            "interface-id": self.interface_id,
            "local-ipv4s": self.private_ip,
            "mac": self.mac,
            "owner-id": "123456789012",
            "subnet-id": self.subnet_id,
            "vpc-id": self.vpc_id,
            "vpc-ipv4-cidr-block": self.vpc_cidrs[0] if self.vpc_cidrs else "",
            "vpc-ipv4-cidr-blocks": "\n".join(self.vpc_cidrs),
        }
        if self.subnet_cidr:
            mac_tree["subnet-ipv4-cidr-block"] = self.subnet_cidr
        return {
            "ami-id": self.ami_id,
            "hostname": hostname,
            "instance-id": self.instance_id,
            "instance-type": self.instance_type,
            "local-hostname": hostname,
            "local-ipv4": self.private_ip,
            "mac": self.mac,
            "network": {"interfaces": {"macs": {self.mac: mac_tree}}},
            "placement": {
                "availability-zone": self.az,
                "region": self.region,
            },
            "iam": self.iam_tree(),
            "services": {"domain": "amazonaws.com", "partition": "aws"},
        }

    def iam_tree(self) -> Tree:
        """``iam/info`` and ``iam/security-credentials/<role>``: the emulator's credentials as a role's.

        The documents have EC2's fields (``Code``, ``LastUpdated``, ``Type``, ``AccessKeyId``,
        ``SecretAccessKey``, ``Token``, ``Expiration``); the token is a fixed string the emulator ignores,
        served so that the boot script signs a session token as it must on EC2.
        """
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        info = {
            "Code": "Success",
            "LastUpdated": now.strftime(stamp),
            "InstanceProfileArn": f"arn:aws:iam::123456789012:instance-profile/{ROLE_NAME}",
            "InstanceProfileId": "AIPANATLAB0000000000",
        }
        credentials = {
            "Code": "Success",
            "LastUpdated": now.strftime(stamp),
            "Type": "AWS-HMAC",
            "AccessKeyId": EMULATOR_CREDENTIALS["aws_access_key_id"],
            "SecretAccessKey": EMULATOR_CREDENTIALS["aws_secret_access_key"],
            "Token": "natlab-session-token",
            "Expiration": (now + CREDENTIALS_LIFETIME).strftime(stamp),
        }
        return {
            "info": json.dumps(info, indent=2),
            "security-credentials": {ROLE_NAME: json.dumps(credentials, indent=2)},
        }

    def identity_document(self) -> str:
        """``/latest/dynamic/instance-identity/document`` (the fields scripts actually read)."""
        return json.dumps(
            {
                "accountId": "123456789012",
                "architecture": "arm64",
                "availabilityZone": self.az,
                "imageId": self.ami_id,
                "instanceId": self.instance_id,
                "instanceType": self.instance_type,
                "privateIp": self.private_ip,
                "region": self.region,
            },
            indent=2,
        )


@dataclass(frozen=True)
class ImdsRequest:
    """One request the server answered."""

    method: str
    path: str
    status: int
    time: float = field(default_factory=time.time)
    """Wall-clock (``time.time()``) when the answer was sent."""


class _Handler(BaseHTTPRequestHandler):
    server: _ImdsHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a client reusing the connection for its
    # next request waits for a delayed ACK (~40 ms a request here), which EC2's IMDS does not add.
    disable_nagle_algorithm = True
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("imds %s: " + format, self.server.identity.instance_id, *args)

    def _reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.server.record(ImdsRequest(self.command, self.path, status))

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path != TOKEN_PATH:
            self._reply(404, "Not Found")
            return
        if self.headers.get("X-Forwarded-For"):
            self._reply(403, "Forbidden")
            return
        raw = self.headers.get(TTL_HEADER)
        try:
            ttl = int(raw or "")
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL:
            self._reply(400, "Bad Request")
            return
        token = self.server.issue_token(ttl)
        self._reply(200, token, {TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:
        token = self.headers.get(TOKEN_HEADER)
        v1_request = token is None and self.server.allow_v1
        if not v1_request and not self.server.token_valid(token):
            self._reply(401, "Unauthorized")
            return
        status, body = self.server.lookup(self.path.split("?", 1)[0])
        self._reply(status, body)

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self._reply(405, "Method Not Allowed", {"Allow": "OPTIONS, GET, HEAD, PUT"})

    do_POST = do_DELETE = do_PATCH = _not_allowed


class _ImdsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        identity: InstanceIdentity,
        sock: Any,
        requests: list[ImdsRequest],
        lock: threading.Lock,
        allow_v1: bool = False,
    ) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.identity = identity
        self.tree: Tree = {
            "meta-data": identity.metadata_tree(),
            "dynamic": {"instance-identity": {"document": identity.identity_document()}},
            "user-data": "",
        }
        self._tokens: dict[str, float] = {}
        self._lock = lock
        self.requests = requests
        self.allow_v1 = allow_v1

    def issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            expires = self._tokens.get(token or "")
        return expires is not None and time.monotonic() < expires

    def record(self, request: ImdsRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def lookup(self, path: str) -> tuple[int, str]:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "latest":
            return 404, "Not Found"
        node: Tree | str = self.tree
        for part in parts[1:]:
            if not isinstance(node, dict) or part not in node:
                return 404, "Not Found"
            node = node[part]
        if isinstance(node, str):
            return 200, node
        return 200, "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items())


class ImdsServer(Resource):
    """IMDSv2 for ``identity`` inside ``ns`` on ``169.254.169.254:80``; a ``Resource``.

    ``requests`` lists every answered request (method, path, status, time) for assertions and the
    timeline. ``user_data`` (bytes) is served at ``/latest/user-data`` when given. ``allow_v1``
    also answers token-less GETs (IMDSv1), for user data written before IMDSv2 (bench/seed).
    """

    def __init__(
        self,
        ns: Namespace,
        identity: InstanceIdentity,
        *,
        host: str = IMDS_ADDRESS,
        port: int = 80,
        user_data: bytes | None = None,
        allow_v1: bool = False,
    ) -> None:
        self.ns = ns
        self.allow_v1 = allow_v1
        self.identity = identity
        self.host = host
        self.port = port
        self.user_data = user_data
        self._server: _ImdsHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[ImdsRequest] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL as seen from inside the namespace."""
        return f"http://{self.host}:{self.port}" if self.port != 80 else f"http://{self.host}"

    @property
    def requests(self) -> list[ImdsRequest]:
        """A copy of the requests answered so far."""
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        """Add the address to ``lo`` (if missing), bind inside the namespace and serve."""
        if self.host == IMDS_ADDRESS:
            self.ns.ip("addr", "replace", f"{self.host}/32", "dev", "lo")
        sock = self.ns.listen_socket(self.host, self.port)
        self._server = _ImdsHTTPServer(self.identity, sock, self._requests, self._lock, self.allow_v1)
        if self.user_data is not None:
            self._server.tree["user-data"] = self.user_data.decode(errors="replace")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"imds-{self.identity.instance_id}",
            daemon=True,
        )
        self._thread.start()
        return self

    def set_target_lifecycle_state(self, state: str) -> None:
        """``meta-data/autoscaling/target-lifecycle-state``: where Auto Scaling takes the instance
        (``InService``, ``Warmed:Stopped``...); it changes as the instance moves (warm pool guide)."""
        if self._server is None:
            raise RuntimeError("IMDS is not started")
        with self._lock:
            self._server.tree["meta-data"]["autoscaling"] = {"target-lifecycle-state": state}  # type: ignore[index]

    def announce_spot_interruption(self, at: datetime, action: str = "terminate") -> None:
        """``meta-data/spot/instance-action``: EC2 will ``action`` the instance at ``at`` (the two-minute
        notice; EC2 user guide, "Spot Instance interruption notices"). 404 until this is called."""
        document = json.dumps({"action": action, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
        self._set_metadata("spot", {"instance-action": document})

    def recommend_rebalance(self, at: datetime) -> None:
        """``meta-data/events/recommendations/rebalance``: the instance is at elevated risk of interruption
        (EC2 user guide, "EC2 instance rebalance recommendations"). 404 until this is called."""
        document = json.dumps({"noticeTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
        self._set_metadata("events", {"recommendations": {"rebalance": document}})

    def _set_metadata(self, key: str, subtree: Tree) -> None:
        if self._server is None:
            raise RuntimeError("IMDS is not started")
        with self._lock:
            self._server.tree["meta-data"][key] = subtree  # type: ignore[index]

    def close(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None and self._thread.is_alive():  # shutdown() waits for serve_forever
                server.shutdown()
            with contextlib.suppress(OSError):
                server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
