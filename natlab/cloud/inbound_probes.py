"""Probes of what gets in: listeners on a private host, connection attempts from outside.

``Listeners`` opens TCP and UDP listening sockets in a namespace (on every address by default)
and tells afterwards what reached them. ``try_tcp`` and ``try_udp`` send from another namespace
and say, port by port, what the sender saw:

- TCP: ``connected`` (a listener accepted), ``refused`` (a RST came back: a host answered, nothing
  listens), ``unreachable`` (an ICMP error came back) or ``no answer`` (dropped on the way);
- UDP: ``answered`` (a datagram came back), ``refused`` (ICMP port unreachable) or ``no answer``.

All connection attempts of one call run at once (non-blocking sockets, one deadline), so a sweep
over a dozen ports costs one timeout, not a dozen. Sockets are made in the namespaces by
``netns_call.call_in_netns``; nothing is spawned. Only addresses inside the lab's own namespaces are
ever targeted (the caller passes them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Iterable
from typing import Self

from natlab.resource import Resource

from .netns_call import call_in_netns

NetnsPath = str | os.PathLike[str]
#: Ports a scan of a NAT would try first: remote shells, web, RDP, alternates, ephemeral ones.
SCAN_TCP_PORTS = (22, 80, 443, 3389, 8080, 9000, 32768, 49152, 60999, 65535)
#: DNS, NTP, SNMP, IKE/IPsec NAT-T, WireGuard, an ephemeral one.
SCAN_UDP_PORTS = (53, 123, 161, 500, 4500, 51820, 60999)
PROBE_PAYLOAD = b"natlab inbound probe\n"


def _socket(netns: NetnsPath, kind: int) -> socket.socket:
    return call_in_netns(netns, socket.socket, socket.AF_INET, kind)


class Listeners(Resource):
    """TCP and UDP listeners on ``ports`` of ``host`` (default: all addresses) inside the namespace at
    ``netns``."""

    def __init__(
        self, netns: NetnsPath, tcp_ports: Iterable[int], udp_ports: Iterable[int], *, host: str = "0.0.0.0"
    ) -> None:
        self.netns = netns
        self.host = host
        self.tcp_ports = list(tcp_ports)
        self.udp_ports = list(udp_ports)
        self._tcp: dict[int, socket.socket] = {}
        self._udp: dict[int, socket.socket] = {}

    def start(self) -> Self:
        for port in self.tcp_ports:
            sock = self._tcp[port] = _socket(self.netns, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(16)
            sock.setblocking(False)
        for port in self.udp_ports:
            sock = self._udp[port] = _socket(self.netns, socket.SOCK_DGRAM)
            sock.bind((self.host, port))
            sock.setblocking(False)
        return self

    def reached(self) -> dict[str, list[str]]:
        """What arrived so far: ``{"tcp 22": ["192.0.2.2:41234", ...], "udp 53": [...]}`` (only ports
        that got something). Accepted connections are closed at once."""
        found: dict[str, list[str]] = {}
        for port, sock in self._tcp.items():
            while True:
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                found.setdefault(f"tcp {port}", []).append(f"{peer[0]}:{peer[1]}")
        for port, sock in self._udp.items():
            while True:
                try:
                    _, peer = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                found.setdefault(f"udp {port}", []).append(f"{peer[0]}:{peer[1]}")
        return found

    def close(self) -> None:
        for sock in [*self._tcp.values(), *self._udp.values()]:
            with contextlib.suppress(OSError):
                sock.close()
        self._tcp.clear()
        self._udp.clear()


def _outcome_of_error(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "refused"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    if code == 0:
        return "connected"
    return f"error {errno.errorcode.get(code, code)}"


def try_tcp(netns: NetnsPath, host: str, ports: Iterable[int], timeout: float = 1.0) -> dict[int, str]:
    """Open a TCP connection to ``host`` on each port from the namespace at ``netns``, all at once."""
    pending: dict[socket.socket, int] = {}
    outcomes: dict[int, str] = {}
    try:
        for port in ports:
            sock = _socket(netns, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                outcomes[port] = _outcome_of_error(code)
                sock.close()
                continue
            pending[sock] = port
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            _, writable, _ = select.select([], list(pending), [], left)
            for sock in writable:
                outcomes[pending.pop(sock)] = _outcome_of_error(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                sock.close()
        for port in pending.values():
            outcomes[port] = "no answer"
    finally:
        for sock in pending:
            sock.close()
    return dict(sorted(outcomes.items()))


def try_udp(netns: NetnsPath, host: str, ports: Iterable[int], timeout: float = 1.0) -> dict[int, str]:
    """Send one datagram to ``host`` on each port from the namespace at ``netns``; wait for answers."""
    socks: dict[socket.socket, int] = {}
    outcomes: dict[int, str] = {}
    try:
        for port in ports:
            sock = _socket(netns, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((host, port))  # connected: an ICMP error is reported on this socket
            sock.send(PROBE_PAYLOAD)
            socks[sock] = port
        deadline = time.monotonic() + timeout
        waiting = dict(socks)
        while waiting and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(list(waiting), [], [], left)
            for sock in readable:
                port = waiting.pop(sock)
                try:
                    sock.recv(2048)
                    outcomes[port] = "answered"
                except ConnectionRefusedError:
                    outcomes[port] = "refused"
                except OSError as error:
                    outcomes[port] = _outcome_of_error(error.errno or 0)
        for port in waiting.values():
            outcomes[port] = "no answer"
    finally:
        for sock in socks:
            sock.close()
    return dict(sorted(outcomes.items()))


# Lets a socket use a source address that is not the host's (Linux ``IP_TRANSPARENT``, needs
# CAP_NET_ADMIN): how a test makes an instance send with a spoofed source without raw packets.
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)


def send_udp_from(netns: NetnsPath, source: str, host: str, port: int, payload: bytes = PROBE_PAYLOAD) -> None:
    """Send one datagram from the namespace at ``netns`` with source address ``source``, which need
    not be one of the namespace's addresses (a spoofed source)."""
    sock = _socket(netns, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.bind((source, 0))
        sock.sendto(payload, (host, port))
    finally:
        sock.close()


__all__ = ["SCAN_TCP_PORTS", "SCAN_UDP_PORTS", "Listeners", "send_udp_from", "try_tcp", "try_udp"]
