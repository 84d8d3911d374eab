"""Network namespaces for the harness: one per emulated instance or router.

Every namespace this module creates is named ``natlab-<run>-<suffix>`` where ``<run>`` is the
creating process id in hex, so a later run can tell its own namespaces from the leftovers of a run
that died (``cleanup_stale``) without touching a concurrent pytest-xdist worker's namespaces.

Traffic rule: nothing here routes anywhere but between namespaces the harness itself created and the
host loopback.

Costs measured here (root, Debian 12 kernel): ``Namespace()`` create with ``lo`` up ~8 ms,
``close()`` (kill + ``ip netns del``) ~6 ms; ``ip -n NS ...`` ~3.4 ms a call.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from natlab.cloud import tools
from natlab.resource import Resource
from natlab.waiting import wait_until

log = logging.getLogger(__name__)

PREFIX = "natlab-"
"""Every namespace the harness creates starts with this."""

RUN_ID = f"{os.getpid():x}"
"""This process's part of namespace names (hex pid: tells live runs from dead ones)."""

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IP_TIMEOUT = 10.0
KILL_DEADLINE = 5.0

_T = TypeVar("_T")
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count(1)
_registry: dict[str, Namespace] = {}
_registry_lock = threading.Lock()


class NamespaceError(RuntimeError):
    """A namespace operation failed (the message carries the command and its stderr)."""


def _run(
    argv: Sequence[str], *, timeout: float = IP_TIMEOUT, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short host command, capturing output; raise NamespaceError with stderr on failure."""
    try:
        return subprocess.run(tools.command(argv), check=check, timeout=timeout, capture_output=True, input=input)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip()
        raise NamespaceError(f"{' '.join(argv)!s} failed ({exc.returncode}): {stderr}") from exc


# --------------------------------------------------------------------------------------------------
# Availability


@functools.cache
def unavailable_reason() -> str | None:
    """Return None when namespaces can be used here, else a sentence saying why not (for skips)."""
    missing = tools.missing_reason(*tools.DATAPLANE_TOOLS)
    if missing:
        return missing
    if os.geteuid() != 0:
        rootless = subprocess.run(
            tools.command(["unshare", "-Urnm", "true"]), capture_output=True, timeout=10, check=False
        )
        if rootless.returncode == 0:
            return (
                "not running as root: `ip netns` needs root; unprivileged user namespaces work "
                "here, so run through scripts/rootless.sh (as `make verify` does) or as root"
            )
        return (
            "not running as root and unprivileged user namespaces are unavailable "
            f"(`unshare -Urnm true`: {rootless.stderr.decode(errors='replace').strip()})"
        )
    probe = f"{PREFIX}probe-{RUN_ID}"
    try:
        _run(["ip", "netns", "add", probe])
    except (NamespaceError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def namespaces_available() -> bool:
    """True when ``Namespace`` works here (see ``unavailable_reason`` for why not)."""
    return unavailable_reason() is None


# --------------------------------------------------------------------------------------------------
# Running code inside a namespace from this process


def call_in_netns(path: str | os.PathLike[str], fn: Callable[..., _T], *args: Any) -> _T:
    """Call ``fn(*args)`` on a fresh thread that has ``setns()``-ed into the namespace at ``path``.

    Only that thread changes namespace (it exits afterwards); the rest of the process stays in the
    host namespace. Sockets created by ``fn`` stay in the namespace they were created in.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn(*args))
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name=f"setns-{Path(path).name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


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


# --------------------------------------------------------------------------------------------------
# Namespace


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
        _write_proc_sys(key, value)


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
        _run(["ip", "netns", "add", self.name])
        self._created = True
        with _registry_lock:
            _registry[self.name] = self
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
                _run(["ip", "netns", "del", self.name], check=False)
            with _registry_lock:
                _registry.pop(self.name, None)
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
        listing = _run(["ip", "-n", self.name, "-o", "link", "show"], check=False).stdout.decode()
        for line in listing.splitlines():
            name = line.split(":", 2)[1].strip().split("@", 1)[0] if line.count(":") >= 2 else ""
            if name and name != "lo":
                _run(["ip", "-n", self.name, "link", "del", name], check=False)

    # -- commands ----------------------------------------------------------------------------------

    def exec_prefix(self) -> list[str]:
        """``[".../ip", "netns", "exec", name]``: prepend to an argv to run it in the namespace."""
        return [tools.tool("ip"), "netns", "exec", self.name]

    def ip(self, *args: str, check: bool = True, timeout: float = IP_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        """Run ``ip -n NAME <args>`` (faster than ``ip netns exec``); NamespaceError on failure."""
        return _run(["ip", "-n", self.name, *args], check=check, timeout=timeout)

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
        """Call ``fn(*args)`` on a thread inside this namespace (see ``call_in_netns``)."""
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
        out = _run(["ip", "netns", "pids", self.name], check=False).stdout.decode()
        return [int(p) for p in out.split()]

    def kill_all(self, deadline: float = KILL_DEADLINE) -> None:
        """SIGKILL the tracked processes (their whole session) and every PID in the namespace."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)
        _kill_until_gone(self.name, self.pids, deadline, lambda: _reap(procs))
        _reap(procs, timeout=2.0)

    # -- small conveniences ------------------------------------------------------------------------

    def link_up(self, ifname: str) -> None:
        """``ip link set IFNAME up`` in this namespace."""
        self.ip("link", "set", ifname, "up")

    def add_address(self, ifname: str, cidr: str) -> None:
        """``ip addr add CIDR dev IFNAME`` in this namespace."""
        self.ip("addr", "add", cidr, "dev", ifname)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _reap(procs: Sequence[subprocess.Popen[Any]], timeout: float = 0.0) -> None:
    for proc in procs:
        if proc.poll() is None and timeout:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)


def _kill_until_gone(
    name: str, pids: Callable[[], list[int]], deadline: float, reap: Callable[[], None] = lambda: None
) -> None:
    """SIGKILL every PID in namespace ``name`` until none is left; warn if some survive ``deadline`` s."""

    def gone() -> bool:
        alive = pids()
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap()
        if alive:
            raise LookupError(f"processes survive SIGKILL: {alive}")
        return True

    try:
        wait_until(gone, what=f"exit of every process in namespace {name}", timeout=deadline, interval=0.01)
    except TimeoutError as error:
        log.warning("%s", error)


# --------------------------------------------------------------------------------------------------
# Links and sysctls


def veth_pair(
    ns_a: Namespace,
    name_a: str,
    ns_b: Namespace,
    name_b: str,
    mac_a: str | None = None,
    mac_b: str | None = None,
    *,
    up: bool = True,
) -> None:
    """Create veth ``name_a`` in ``ns_a`` with its peer ``name_b`` in ``ns_b`` (both up by default).

    Interface names are at most 15 characters. Deleting either namespace destroys both ends.
    """
    argv = ["link", "add", name_a]
    if mac_a:
        argv += ["address", mac_a]
    argv += ["type", "veth", "peer", "name", name_b, "netns", ns_b.name]
    if mac_b:
        argv += ["address", mac_b]
    ns_a.ip(*argv)
    if up:
        ns_a.link_up(name_a)
        ns_b.link_up(name_b)


def bridge(ns: Namespace, name: str, mac: str, *, up: bool = True) -> None:
    """Create a bridge with a FIXED MAC (else it takes its lowest port MAC and neighbours break)."""
    ns.ip("link", "add", name, "address", mac, "type", "bridge")
    if up:
        ns.link_up(name)


def set_master(ns: Namespace, ifname: str, bridge_name: str) -> None:
    """Attach ``ifname`` to bridge ``bridge_name`` inside ``ns``."""
    ns.ip("link", "set", ifname, "master", bridge_name)


def _write_proc_sys(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    path.write_text(f"{value}\n")


def _read_proc_sys(key: str) -> str:
    return (Path("/proc/sys") / key.replace(".", "/")).read_text().strip()


def set_sysctl(ns: Namespace, key: str, value: str | int) -> None:
    """Set a (network) sysctl such as ``net.ipv4.ip_forward`` inside ``ns`` (no process spawned).

    Keys name ``/proc/sys`` paths with dots; interface names containing dots are not supported.
    """
    ns.call(_write_proc_sys, key, str(value))


def get_sysctl(ns: Namespace, key: str) -> str:
    """Read a (network) sysctl inside ``ns``."""
    return ns.call(_read_proc_sys, key)


# --------------------------------------------------------------------------------------------------
# Cleanup of leftovers


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing namespaces starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _remove_by_name(name: str) -> None:
    def pids() -> list[int]:
        return [int(p) for p in _run(["ip", "netns", "pids", name], check=False).stdout.decode().split()]

    _kill_until_gone(name, pids, KILL_DEADLINE)
    _run(["ip", "netns", "del", name], check=False)


def cleanup_all(prefix: str = PREFIX) -> list[str]:
    """Remove EVERY namespace starting with ``prefix``: kill its processes, delete it (its veths go too).

    This also removes namespaces of concurrently running harness processes; for start-of-session
    cleanup prefer ``cleanup_stale``. Returns the names removed.
    """
    with _registry_lock:
        mine = [ns for name, ns in _registry.items() if name.startswith(prefix)]
    for ns in mine:
        with contextlib.suppress(Exception):
            ns.close()
    names = list_namespaces(prefix)
    for name in names:
        _remove_by_name(name)
    if names:
        log.info("removed leftover namespaces: %s", " ".join(names))
    return [ns.name for ns in mine] + names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove ``natlab-<run>-*`` namespaces whose creating process (``<run>``, hex pid) is dead."""
    removed = []
    for name in list_namespaces(prefix):
        run = name[len(prefix) :].split("-", 1)[0]
        try:
            owner = int(run, 16)
        except ValueError:
            owner = -1
        if owner == os.getpid() or (owner > 0 and _pid_alive(owner)):
            continue
        _remove_by_name(name)
        removed.append(name)
    if removed:
        log.info("removed stale namespaces: %s", " ".join(removed))
    return removed


def close_all_live() -> None:
    """Close every namespace this process still has open (registered with atexit)."""
    with _registry_lock:
        live = list(_registry.values())
    for ns in live:
        try:
            ns.close()
        except Exception:  # keep closing the others
            log.exception("closing %s failed", ns.name)


atexit.register(close_all_live)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks and atexit cleanup still run.

    Call from the main thread (e.g. in ``pytest_configure``); SIGINT already raises
    KeyboardInterrupt. Handlers set by someone else are left alone.
    """
    for sig in signals:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_system_exit)


__all__ = [
    "PREFIX",
    "RUN_ID",
    "Namespace",
    "NamespaceError",
    "bridge",
    "call_in_netns",
    "cleanup_all",
    "cleanup_stale",
    "close_all_live",
    "get_sysctl",
    "install_signal_handlers",
    "list_namespaces",
    "namespaces_available",
    "set_master",
    "set_sysctl",
    "unavailable_reason",
    "veth_pair",
]
