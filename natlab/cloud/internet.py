"""The emulated internet: one namespace linked only to the VPC router, hosting the test servers.

Addresses (documentation ranges, never routed anywhere real):

- link router <-> internet: 192.0.2.0/30 (TEST-NET-1), router ``192.0.2.1`` on ``nligw0``,
  internet ``192.0.2.2`` on ``eth0``;
- servers: ``203.0.113.10`` (TEST-NET-3) on the internet's ``lo``: HTTP :80 (answers with the client
  address it saw), UDP echo :7, TCP line echo :9000 (see ``inet_servers.py``).

The internet's only route is a default via the router, so replies to the public IPs that moto hands
out (``54.214.x.x`` auto-assigned, ``127.x.y.z`` Elastic IPs) go back to the router and nowhere else.
Because moto's Elastic IPs are in 127/8, the internet namespace accepts and routes them
(``route_localnet=1`` and its local table keeps only ``127.0.0.1``).
"""

from __future__ import annotations

import contextlib
import logging
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Self

from natlab.resource import Resource
from natlab.waiting import wait_until

from .netns import Namespace
from .netns_links import veth_pair
from .netns_sysctl import set_sysctl

log = logging.getLogger(__name__)

SERVER_IP = "203.0.113.10"
HTTP_PORT = 80
UDP_ECHO_PORT = 7
TCP_ECHO_PORT = 9000
ROUTER_LINK_IP = "192.0.2.1"
INTERNET_LINK_IP = "192.0.2.2"
LINK_PREFIX = 30
ROUTER_IFNAME = "nligw0"
INTERNET_IFNAME = "eth0"
SERVERS_SCRIPT = Path(__file__).with_name("inet_servers.py")
READY_DEADLINE = 10.0


class Internet(Resource):
    """The internet namespace, its link to ``router`` and its servers; a ``Resource``.

    ``close()`` kills the servers (by PID, via the namespace) and deletes the namespace (which also
    removes the link's router end); ``with`` and ``open()`` call it when the start fails half-way.
    """

    def __init__(self, router: Namespace, suffix: str) -> None:
        self.router = router
        self.ns = Namespace(suffix)
        self.servers: subprocess.Popen[str] | None = None
        self.http_clients: list[str] = []
        """Client addresses the HTTP server saw, in order (from its ``http <client>`` lines)."""

    def start(self) -> Self:
        self.ns.open()
        veth_pair(self.router, ROUTER_IFNAME, self.ns, INTERNET_IFNAME)
        self.router.add_address(ROUTER_IFNAME, f"{ROUTER_LINK_IP}/{LINK_PREFIX}")
        self.ns.add_address(INTERNET_IFNAME, f"{INTERNET_LINK_IP}/{LINK_PREFIX}")
        self.ns.add_address("lo", f"{SERVER_IP}/32")
        self.ns.ip("route", "add", "default", "via", ROUTER_LINK_IP)
        # moto's Elastic IPs are 127.x.y.z: accept them as sources and send replies to them
        # through the router instead of to this namespace's own loopback.
        for key in ("net.ipv4.conf.all.route_localnet", f"net.ipv4.conf.{INTERNET_IFNAME}.route_localnet"):
            set_sysctl(self.ns, key, 1)
        self.ns.ip("route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
        self._start_servers()
        return self

    def _start_servers(self) -> None:
        servers = self.servers = self.ns.popen(
            [sys.executable, str(SERVERS_SCRIPT), "--address", SERVER_IP], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        stdout = servers.stdout
        assert stdout is not None

        def ready() -> bool:
            if not select.select([stdout], [], [], 0)[0]:
                return False
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"internet servers exited before ready (exit status {servers.poll()})")
            return line.strip() == "ready"

        wait_until(ready, what="ready line from the internet servers", timeout=READY_DEADLINE, interval=0.01)
        log.debug("internet servers ready on %s (pid %d)", SERVER_IP, servers.pid)
        threading.Thread(target=self._drain, args=(stdout,), name="internet-servers-out", daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        """Read the servers' output (so its pipe never fills) and keep the HTTP clients seen."""
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                if line.startswith("http "):
                    self.http_clients.append(line.split()[1])

    def wait_http_clients(self, count: int, timeout: float = 2.0) -> list[str]:
        """``http_clients`` once it holds at least ``count`` entries (the log trails the reply)."""

        def logged() -> list[str]:
            if len(self.http_clients) < count:
                raise LookupError(f"HTTP server logged {len(self.http_clients)} of {count} requests")
            return list(self.http_clients)

        return wait_until(logged, what=f"{count} HTTP requests in the server log", timeout=timeout, interval=0.002)

    def close(self) -> None:
        """Kill the servers and delete the namespace. Idempotent."""
        self.ns.close()
        if self.servers is not None and self.servers.stdout is not None:
            with contextlib.suppress(OSError):
                self.servers.stdout.close()
