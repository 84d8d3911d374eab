"""Hundreds of TCP flows through the NAT at once, held by one thread, and the fate of each across a failover.

``ManyFlows`` opens ``count`` connections from a private workload namespace to the internet's line
echo and keeps every one talking: a short line every ``interval`` s, the flows' phases spread evenly
over the interval. One thread and one ``selectors`` selector serve them all (no thread per flow).

After a failover, ``fates(served_at, stall)`` says what became of each flow:

- **reset**: ``ECONNRESET``/``EPIPE``. The replacement NAT has no conntrack entry for the flow. When
  it has a different public IP (no Elastic IP: the auto-assigned address goes with the old
  instance), it masquerades the flow's next segment to its own address: the server has no
  connection from that address and port and answers RST, which the new NAT passes back to the
  client. Where the new NAT's security group lets the server's own retransmission in, its stack
  answers that with a RST too.
- **survived**: echoed again after the new NAT served. Only with the Elastic IP moved along: the
  client's retransmission reaches the new NAT, which adopts the mid-stream flow
  (``nf_conntrack_tcp_loose=1``) and masquerades it keeping the source port, so the server sees the
  same address and port as before (its own retransmissions meanwhile are dropped by the new NAT's
  security group: a connection it never saw, from outside the served CIDR blocks).
- **closed**: the server closed the connection (FIN).
- **hung**: no echo and no error for longer than ``stall`` s after the new NAT served.
- **error**: any other socket error (named in ``Flow.detail``).

Why no flow's fate depends on timing luck: every flow keeps sending through the outage, so each has
unacknowledged data when the route moves, and its retransmission timer (Linux: from 200 ms,
doubling) sends it through the new NAT within about the outage's length after (``stall_bound``).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import os
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Self

from natlab.resource import Resource
from natlab.waiting import wait_until

from .internet import SERVER_IP, TCP_ECHO_PORT
from .netns_call import call_in_netns

log = logging.getLogger(__name__)

NetnsPath = str | os.PathLike[str]
MAX_FLOWS = 5000
#: Open files besides the flows' sockets that the process may need meanwhile (logs, pipes, API clients).
SPARE_FILES = 256
#: Connections started at once (a burst of SYNs beyond the server's accept backlog costs 1 s retries).
CONNECT_BATCH = 64
#: Linux's minimum retransmission timeout: the first retransmission after an outage of T s comes
#: within T + this (the timer doubles from it), counted from the route's move.
TCP_RTO_MIN = 0.2
#: A stall bound is never shorter than this (a loaded 2-core machine delays timers and the router).
MIN_STALL = 3.0
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE}


def stall_bound(fault_at: float, served_at: float) -> float:
    """How long after the new NAT serves a flow may stay silent before it counts as hung.

    The outage (fault -> served) plus the minimum retransmission timeout, 25 % and 1 s of slack for
    a busy machine; at least ``MIN_STALL``.
    """
    outage = max(0.0, served_at - fault_at)
    return max(MIN_STALL, 1.25 * (outage + TCP_RTO_MIN) + 1.0)


def ensure_open_files(needed: int) -> None:
    """Raise the soft ``RLIMIT_NOFILE`` (within the hard one) so ``needed`` more files fit.

    Raises ``OSError`` naming both limits when even the hard limit is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(os.listdir("/proc/self/fd")) + needed + SPARE_FILES
    if soft == resource.RLIM_INFINITY or want <= soft:
        return
    if hard != resource.RLIM_INFINITY and want > hard:
        raise OSError(
            errno.EMFILE,
            f"ManyFlows count={needed} needs about {want} open files, but RLIMIT_NOFILE allows {hard} "
            f"(hard limit; soft {soft}): lower count or raise the hard limit (ulimit -Hn)",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    log.info("raised the soft open-file limit from %d to %d for %d flows", soft, want, needed)


@dataclass
class Flow:
    """One held connection: what it sent, when it last heard its echo, and how it ended (if it did)."""

    index: int
    sock: socket.socket
    next_send: float
    sent: int = 0
    echoed: int = 0
    buffer: bytes = b""
    last_echo: float | None = None
    ended: str | None = None
    """``reset``, ``closed`` or ``error``; None while the connection is open."""
    ended_at: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class FlowCounts:
    """How many flows ended each way (``pending``: no fate yet, the stall bound has not passed)."""

    total: int
    survived: int = 0
    reset: int = 0
    closed: int = 0
    hung: int = 0
    error: int = 0
    pending: int = 0

    def text(self) -> str:
        """``300 flows: 0 survived, 300 reset, 0 closed, 0 hung`` (errors and pending only when any)."""
        parts = [f"{self.survived} survived", f"{self.reset} reset", f"{self.closed} closed", f"{self.hung} hung"]
        parts += [f"{n} {name}" for name, n in (("error", self.error), ("pending", self.pending)) if n]
        return f"{self.total} flows: {', '.join(parts)}"

    def as_dict(self) -> dict[str, int]:
        return {
            "flows": self.total,
            "survived": self.survived,
            "reset": self.reset,
            "closed": self.closed,
            "hung": self.hung,
            "error": self.error,
        }


def _new_sockets(count: int) -> list[socket.socket]:
    return [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]


class ManyFlows(Resource):
    """``count`` TCP connections to the line echo from the namespace at ``netns``, one line each every ``interval`` s.

    A ``Resource``: ``start()`` connects them all (raises ``ConnectionError`` if any fails within
    ``connect_timeout``) and starts the one thread that holds them; ``close()`` stops it and closes
    every socket.
    """

    def __init__(
        self,
        netns: NetnsPath,
        *,
        count: int = 300,
        interval: float = 0.5,
        target: tuple[str, int] = (SERVER_IP, TCP_ECHO_PORT),
        connect_timeout: float = 15.0,
    ) -> None:
        if not 1 <= count <= MAX_FLOWS:
            raise ValueError(f"count must be from 1 to {MAX_FLOWS} flows, got {count}")
        if not 0.05 <= interval <= 60:
            raise ValueError(f"interval must be from 0.05 to 60 seconds, got {interval}")
        self.netns = netns
        self.count = count
        self.interval = interval
        self.target = target
        self.connect_timeout = connect_timeout
        self.flows: list[Flow] = []
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        ensure_open_files(self.count)
        sockets = call_in_netns(self.netns, _new_sockets, self.count)
        now = time.monotonic()
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            phase = self.interval * index / self.count
            self.flows.append(Flow(index, sock, now + phase))
        self._connect_all()
        for flow in self.flows:
            self._selector.register(flow.sock, selectors.EVENT_READ, flow)
        self._thread = threading.Thread(target=self._loop, name="many-flows", daemon=True)
        self._thread.start()
        return self

    def _connect_all(self) -> None:
        """Connect in batches of ``CONNECT_BATCH``; every connection must be up within the timeout."""
        deadline = time.monotonic() + self.connect_timeout
        with selectors.DefaultSelector() as connecting:
            for first in range(0, len(self.flows), CONNECT_BATCH):
                for flow in self.flows[first : first + CONNECT_BATCH]:
                    code = flow.sock.connect_ex(self.target)
                    if code not in (0, errno.EINPROGRESS):
                        raise ConnectionError(f"flow {flow.index} to {self.target}: {os.strerror(code)}")
                    connecting.register(flow.sock, selectors.EVENT_WRITE, flow)
                while connecting.get_map():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ConnectionError(
                            f"{len(connecting.get_map())} of {self.count} flows to {self.target} not connected "
                            f"within {self.connect_timeout} s"
                        )
                    for key, _ in connecting.select(remaining):
                        code = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                        if code:
                            raise ConnectionError(f"flow {key.data.index} to {self.target}: {os.strerror(code)}")
                        connecting.unregister(key.fileobj)

    def close(self) -> None:
        """Stop the thread, close every socket; ``flows`` stays readable. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for flow in self.flows:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(flow.sock)
            flow.sock.close()
        self._selector.close()

    # -- the one thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        due = [(flow.next_send, flow.index) for flow in self.flows]
        heapq.heapify(due)
        while not self._stop.is_set():
            timeout = min(0.05, max(0.0, due[0][0] - time.monotonic())) if due else 0.05
            for key, _ in self._selector.select(timeout):
                self._receive(key.data)
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, index = heapq.heappop(due)
                flow = self.flows[index]
                if flow.ended is None:
                    self._send(flow)
                    # A loop that fell behind sends once and moves on, rather than bursting to catch up.
                    flow.next_send = max(flow.next_send + self.interval, now)
                    heapq.heappush(due, (flow.next_send, index))

    def _send(self, flow: Flow) -> None:
        try:
            flow.sock.send(f"{flow.sent}\n".encode())
            flow.sent += 1
        except BlockingIOError:
            pass  # the send buffer is full of unacknowledged lines: the outage; try at the next tick
        except OSError as exc:
            self._end(flow, exc)

    def _receive(self, flow: Flow) -> None:
        try:
            chunk = flow.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(flow, exc)
            return
        if not chunk:
            self._end(flow, None)
            return
        *lines, flow.buffer = (flow.buffer + chunk).split(b"\n")
        if lines:
            flow.echoed += len(lines)
            flow.last_echo = time.monotonic()

    def _end(self, flow: Flow, exc: OSError | None) -> None:
        if exc is None:
            flow.ended, flow.detail = "closed", "peer closed (FIN)"
        elif exc.errno in _RESET_ERRNOS:
            flow.ended, flow.detail = "reset", errno.errorcode.get(exc.errno or 0, str(exc))
        else:
            flow.ended, flow.detail = "error", repr(exc)
        flow.ended_at = time.monotonic()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(flow.sock)

    # -- observation -------------------------------------------------------------------------------

    def wait_all_echoed(self, timeout: float = 10.0) -> None:
        """Block until every flow has heard at least one echo (raise ``TimeoutError`` otherwise)."""

        def all_echoed() -> bool:
            silent = [f.index for f in self.flows if f.last_echo is None]
            if silent:
                raise LookupError(f"{len(silent)} of {self.count} flows without an echo yet (e.g. {silent[:5]})")
            return True

        wait_until(all_echoed, what=f"an echo on each of {self.count} flows", timeout=timeout, interval=0.05)

    def fate(self, flow: Flow, served_at: float, stall: float, now: float) -> str:
        """``survived``, ``reset``, ``closed``, ``error``, ``hung`` or ``pending`` (see the module docstring)."""
        if flow.ended is not None:
            return flow.ended
        if flow.last_echo is not None and flow.last_echo > served_at:
            return "survived"
        return "hung" if now - served_at > stall else "pending"

    def fates(self, served_at: float, stall: float) -> FlowCounts:
        """The count of each fate now, for a new NAT that served from ``served_at`` (monotonic)."""
        now = time.monotonic()
        tally = {"survived": 0, "reset": 0, "closed": 0, "hung": 0, "error": 0, "pending": 0}
        for flow in self.flows:
            tally[self.fate(flow, served_at, stall, now)] += 1
        return FlowCounts(len(self.flows), **tally)

    def settle(self, served_at: float, stall: float) -> FlowCounts:
        """Wait until no flow is pending (at most ``stall`` s after ``served_at``), then count the fates."""

        def decided() -> FlowCounts:
            counts = self.fates(served_at, stall)
            if counts.pending:
                raise LookupError(counts.text())
            return counts

        timeout = max(0.0, served_at + stall - time.monotonic()) + 0.5
        return wait_until(decided, what=f"a fate for each of {self.count} flows", timeout=timeout, interval=0.05)


__all__ = ["Flow", "FlowCounts", "ManyFlows", "ensure_open_files", "stall_bound"]
