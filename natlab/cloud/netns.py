"""Network namespaces for the harness: one per emulated instance or router.

``Namespace`` is what every instance, router and probe lives in: made with ``lo`` up and known
sysctls, and closed with every process and socket it holds so nothing outlives a test. Its name
follows ``netns_names``; the other ``netns_*`` modules hold what is done to or around namespaces.

Traffic rule: nothing in the ``netns*`` modules routes anywhere but between namespaces the harness
itself created and the host loopback.

Costs measured here (root, Debian 12 kernel): ``Namespace()`` create with ``lo`` up ~8 ms,
``close()`` (kill + ``ip netns del``) ~6 ms; ``ip -n NS ...`` ~3.4 ms a call.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

from natlab.cloud import tools
from natlab.resource import Resource

from .netns_call import call_in_netns
from .netns_cleanup import live_namespaces, live_namespaces_lock
from .netns_command import IP_TIMEOUT, run_command
from .netns_kill import KILL_DEADLINE, kill_group, kill_until_gone, reap
from .netns_names import NETNS_DIR, PREFIX, RUN_ID
from .netns_sysctl import write_proc_sys

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_counter = itertools.count(1)


BASELINE_SYSCTLS = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.send_redirects": "1",
    "net.ipv4.conf.default.send_redirects": "1",
}
"""Set in every new namespace: a new namespace copies the host's current IPv4 settings
(``net.core.devconf_inherit_init_net=0``), so a host with ``ip_forward=1`` would otherwise hand
every emulated instance a forwarding kernel before its boot script asked for one."""


def _write_baseline() -> None:
    for key, value in BASELINE_SYSCTLS.items():
        write_proc_sys(key, value)


class Namespace(Resource):
    """A network namespace with ``lo`` up; a ``Resource`` whose ``close()`` removes it and its processes.

    It starts from the kernel defaults in ``BASELINE_SYSCTLS`` (``ip_forward=0``) whatever the
    host's settings are.

    ``Namespace("router")`` is named ``natlab-<run>-router``; without a suffix a counter is used.
    The namespace is created by ``open()`` (or ``with``); if creation fails half-way, what was made
    is removed before the error propagates.
    """

    def __init__(self, suffix: str | None = None, *, prefix: str = PREFIX) -> None:
        suffix = suffix or f"ns{next(_counter)}"
        self.name = f"{prefix}{RUN_ID}-{suffix}"
        self.path = NETNS_DIR / self.name
        self._procs: list[subprocess.Popen[Any]] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._created = False
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Create the namespace and bring ``lo`` up (use ``open()`` or ``with``: they clean up a
        failed start)."""
        if self._created:
            return self
        if self.path.exists():  # same suffix twice in one run (e.g. an instance id after a reset)
            self.name = f"{self.name}-{next(_counter)}"
            self.path = NETNS_DIR / self.name
        run_command(["ip", "netns", "add", self.name])
        self._created = True
        with live_namespaces_lock:
            live_namespaces[self.name] = self
        self.ip("link", "set", "lo", "up")
        self.call(_write_baseline)
        log.debug("namespace %s created", self.name)
        return self

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def close(self) -> None:
        """Kill every process in the namespace, close its sockets, then delete it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.kill_all()
        finally:
            with self._lock:
                sockets, self._sockets = self._sockets, []
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            if self._created:
                self._delete_links()
                run_command(["ip", "netns", "del", self.name], check=False)
            with live_namespaces_lock:
                live_namespaces.pop(self.name, None)
            log.debug("namespace %s deleted", self.name)

    def exists(self) -> bool:
        """True while ``/run/netns/<name>`` exists."""
        return self.path.exists()

    def _delete_links(self) -> None:
        """Deletes every link but ``lo`` (a veth takes its peer with it) before the name goes.

        ``ip netns del`` only removes the name: the namespace lives on while any mount namespace
        still holds a copy of its bind mount, and every instance's private mount namespace took one
        of each namespace that existed when it started. Such a namespace kept its forwarding and
        masquerade wired to the router: a rebooted NAT's old kernel went on forwarding beside its
        new one (a reboot scenario lost no datagram in CI). Without its links it reaches nothing.
        """
        if not self.exists():
            return
        listing = run_command(["ip", "-n", self.name, "-o", "link", "show"], check=False).stdout.decode()
        for line in listing.splitlines():
            name = line.split(":", 2)[1].strip().split("@", 1)[0] if line.count(":") >= 2 else ""
            if name and name != "lo":
                run_command(["ip", "-n", self.name, "link", "del", name], check=False)

    # -- commands ----------------------------------------------------------------------------------

    def exec_prefix(self) -> list[str]:
        """``[".../ip", "netns", "exec", name]``: prepend to an argv to run it in the namespace."""
        return [tools.tool("ip"), "netns", "exec", self.name]

    def ip(self, *args: str, check: bool = True, timeout: float = IP_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        """Run ``ip -n NAME <args>`` (faster than ``ip netns exec``); NamespaceError on failure."""
        return run_command(["ip", "-n", self.name, *args], check=check, timeout=timeout)

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` of ``argv`` inside the namespace (via ``ip netns exec``; the program is
        found by :mod:`natlab.cloud.tools`, so ``nft`` works without /usr/sbin on PATH)."""
        kwargs.setdefault("capture_output", True)
        return subprocess.run([*self.exec_prefix(), *tools.command(argv)], check=check, timeout=timeout, **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` (found like ``run``'s) inside the namespace in its own session; killed by ``close()``."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen([*self.exec_prefix(), *tools.command(argv)], **kwargs)
        with self._lock:
            self._procs.append(proc)
        return proc

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call ``fn(*args)`` on a thread inside this namespace (see ``netns_call.call_in_netns``)."""
        return call_in_netns(self.path, fn, *args)

    def listen_socket(self, host: str, port: int, type: int = socket.SOCK_STREAM, backlog: int = 128) -> socket.socket:
        """A socket bound (and for TCP listening) on ``host:port`` inside this namespace.

        The socket is closed by ``close()``; the caller may close it earlier.
        """
        sock = self.call(_bind_listen, host, port, type, backlog)
        with self._lock:
            self._sockets.append(sock)
        return sock

    # -- processes ---------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """PIDs of the processes whose network namespace is this one (``ip netns pids``)."""
        if not self._created or not self.exists():
            return []
        out = run_command(["ip", "netns", "pids", self.name], check=False).stdout.decode()
        return [int(p) for p in out.split()]

    def kill_all(self, deadline: float = KILL_DEADLINE) -> None:
        """SIGKILL the tracked processes (their whole session) and every PID in the namespace."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            kill_group(proc)
        kill_until_gone(self.name, self.pids, deadline, lambda: reap(procs))
        reap(procs, timeout=2.0)

    # -- small conveniences ------------------------------------------------------------------------

    def link_up(self, ifname: str) -> None:
        """``ip link set IFNAME up`` in this namespace."""
        self.ip("link", "set", ifname, "up")

    def add_address(self, ifname: str, cidr: str) -> None:
        """``ip addr add CIDR dev IFNAME`` in this namespace."""
        self.ip("addr", "add", cidr, "dev", ifname)


def _bind_listen(host: str, port: int, type_: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, type_)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if type_ == socket.SOCK_STREAM:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["Namespace"]
