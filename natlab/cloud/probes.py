"""Traffic probes run from a private workload namespace through the emulated VPC to the internet.

The probes' sockets are created inside the workload's namespace by a thread that ``setns()``-ed into
it (``netns_call.call_in_netns``) and then used from this process: no subprocess per packet, timestamps
from ``time.monotonic()`` on the sending and receiving threads (comparable with ``RouterEvent.mono``).
Every probe is bounded in packets and time and stops by itself.

- ``UdpStream``: a steady stream of sequence-numbered datagrams to the UDP echo; gaps in the echoes
  give the outage window and the loss count.
- ``http_whoami``: one HTTP GET to the internet server, which answers with the client address it
  saw (behind a working NAT: the NAT's public IP / Elastic IP).
- ``TcpHold``: one established TCP connection to the line echo, a small message every ~50 ms; it
  records exactly what happens across a failover (reset, stall, close) with timestamps.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal, Self

from natlab.resource import Resource
from natlab.waiting import wait_until

from .internet import HTTP_PORT, SERVER_IP, TCP_ECHO_PORT, UDP_ECHO_PORT
from .netns_call import call_in_netns

log = logging.getLogger(__name__)

NetnsPath = str | os.PathLike[str]
_UDP_FORMAT = "!Id"  # sequence number, send time (monotonic)


def socket_in(netns: NetnsPath, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM) -> socket.socket:
    """A new socket that lives in the network namespace at ``netns`` (path under /run/netns)."""
    return call_in_netns(netns, socket.socket, family, type)


def connect_in(netns: NetnsPath, address: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection to ``address`` made from inside the namespace at ``netns``."""
    return call_in_netns(netns, socket.create_connection, address, timeout)


# --------------------------------------------------------------------------------------------------
# HTTP


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: NetnsPath, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        self.sock = connect_in(self._netns, (self.host, self.port), self.timeout)


def http_whoami(netns: NetnsPath, host: str = SERVER_IP, port: int = HTTP_PORT, timeout: float = 2.0) -> str:
    """GET ``http://host:port/`` from the namespace; return the client address the server saw.

    Raises ``OSError`` (e.g. ``TimeoutError``) when the internet cannot be reached.
    """
    conn = _NetnsHTTPConnection(netns, host, port, timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from {host}: {body}")
        return body
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# UDP stream


@dataclass(frozen=True)
class Gap:
    """A run of lost datagrams: sequence numbers ``first..last`` (inclusive)."""

    first: int
    last: int
    lost: int
    start: float
    """Send time of the first lost datagram (monotonic)."""
    end: float
    """Receive time of the first echo after the run (monotonic); ``inf`` if none came back."""

    @property
    def duration(self) -> float:
        """Outage window in seconds: first lost sent -> first echo received again."""
        return self.end - self.start


@dataclass
class UdpResult:
    sent: dict[int, float] = field(default_factory=dict)
    received: dict[int, float] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(set(self.sent) - set(self.received))

    def gaps(self) -> list[Gap]:
        """Runs of consecutive lost sequence numbers, in order."""
        gaps: list[Gap] = []
        seqs = sorted(self.sent)
        run: list[int] = []
        for seq in [*seqs, None]:
            if seq is not None and seq not in self.received:
                run.append(seq)
                continue
            if run:
                end = self.received[seq] if seq is not None else float("inf")
                gaps.append(Gap(run[0], run[-1], len(run), self.sent[run[0]], end))
                run = []
        return gaps

    def rtts(self) -> list[float]:
        return [self.received[s] - self.sent[s] for s in sorted(self.received) if s in self.sent]


class UdpStream(Resource):
    """Send ``rate`` sequence-numbered datagrams a second to the UDP echo, record the echoes.

    A ``Resource``: it starts on enter and stops on exit (or by itself after ``duration`` s);
    ``result`` holds send/receive times. Datagrams whose echo comes later than ``late`` s after the
    last send are not waited for.
    """

    def __init__(
        self,
        netns: NetnsPath,
        *,
        rate: float = 100.0,
        duration: float = 30.0,
        target: tuple[str, int] = (SERVER_IP, UDP_ECHO_PORT),
        late: float = 0.5,
    ) -> None:
        if not 0 < rate <= 10_000 or not 0 < duration <= 600:
            raise ValueError("rate must be in (0, 10000] per second and duration in (0, 600] s")
        self.netns = netns
        self.rate = rate
        self.duration = duration
        self.target = target
        self.late = late
        self.result = UdpResult()
        self._stop = threading.Event()
        self._no_more = threading.Event()  # stop sending, still receive for ``late`` s
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> Self:
        self._sock = socket_in(self.netns)
        self._sock.connect(self.target)
        self._sock.settimeout(0.05)
        for fn in (self._send_loop, self._receive_loop):
            thread = threading.Thread(target=fn, name=f"udp-probe-{fn.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _send_loop(self) -> None:
        assert self._sock is not None
        start = time.monotonic()
        total = int(self.rate * self.duration)
        for seq in range(total):
            due = start + seq / self.rate
            if self._no_more.wait(max(0.0, due - time.monotonic())) or self._stop.is_set():
                break
            now = time.monotonic()
            self.result.sent[seq] = now
            with contextlib.suppress(OSError):  # e.g. ICMP unreachable reported on the socket
                self._sock.send(struct.pack(_UDP_FORMAT, seq, now))
        self._stop.wait(self.late)
        self._stop.set()

    def _receive_loop(self) -> None:
        assert self._sock is not None
        size = struct.calcsize(_UDP_FORMAT)
        while not self._stop.is_set():
            try:
                data = self._sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            except OSError:
                if self._stop.is_set():
                    break
                continue
            now = time.monotonic()
            if len(data) >= size:
                seq, _ = struct.unpack(_UDP_FORMAT, data[:size])
                self.result.received.setdefault(seq, now)

    def finish(self) -> None:
        """Stop sending now, then keep receiving for ``late`` s: every echo in flight is counted."""
        self._no_more.set()
        self.wait(timeout=self.late + 2.0)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the stream has finished by itself (``duration`` + ``late``)."""
        for thread in self._threads:
            thread.join(timeout)

    def wait_received(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until ``count`` echoes arrived (raise ``TimeoutError`` otherwise)."""

        def arrived() -> bool:
            received = len(self.result.received)
            if received < count:
                raise LookupError(f"{received} of {count} echoes ({len(self.result.sent)} sent)")
            return True

        wait_until(arrived, what=f"{count} UDP echoes", timeout=timeout, interval=0.005)

    def close(self) -> None:
        """Stop sending and receiving, close the socket; ``result`` stays readable. Idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()

    def stop(self) -> None:
        """``close()``: end the stream now."""
        self.close()


# --------------------------------------------------------------------------------------------------
# TCP hold


TcpOutcome = Literal["running", "ok", "reset", "stall", "closed", "error"]


@dataclass(frozen=True)
class TcpEvent:
    mono: float
    kind: Literal["connected", "echo", "reset", "stall", "closed", "error", "stopped"]
    seq: int | None = None
    detail: str = ""


class TcpHold(Resource):
    """Hold one TCP connection to the line echo, sending ``seq\\n`` every ``interval`` s.

    A ``Resource``. Stops by itself at the first reset, close or error, after a ``stall`` (no echo
    for that many seconds), or after ``duration`` s. ``outcome`` says which; ``events`` has the
    timestamps.
    """

    def __init__(
        self,
        netns: NetnsPath,
        *,
        interval: float = 0.05,
        duration: float = 30.0,
        stall: float = 2.0,
        target: tuple[str, int] = (SERVER_IP, TCP_ECHO_PORT),
        connect_timeout: float = 2.0,
    ) -> None:
        self.netns = netns
        self.interval = interval
        self.duration = duration
        self.stall = stall
        self.target = target
        self.connect_timeout = connect_timeout
        self.events: list[TcpEvent] = []
        self.outcome: TcpOutcome = "running"
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._sock = connect_in(self.netns, self.target, self.connect_timeout)
        self.events.append(
            TcpEvent(time.monotonic(), "connected", detail=f"{self._sock.getsockname()} -> {self.target}")
        )
        self._sock.settimeout(0.01)
        self._thread = threading.Thread(target=self._loop, name="tcp-hold", daemon=True)
        self._thread.start()
        return self

    def _finish(self, outcome: TcpOutcome, kind: str, detail: str = "") -> None:
        self.outcome = outcome
        self.events.append(TcpEvent(time.monotonic(), kind, detail=detail))  # type: ignore[arg-type]

    def _loop(self) -> None:
        assert self._sock is not None
        start = last_echo = time.monotonic()
        seq, buffer = 0, b""
        next_send = start
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - start > self.duration:
                    self._finish("ok", "stopped", "duration reached")
                    return
                if now - last_echo > self.stall:
                    self._finish("stall", "stall", f"no echo for {self.stall}s")
                    return
                if now >= next_send:
                    self._sock.sendall(f"{seq}\n".encode())
                    seq += 1
                    next_send += self.interval
                try:
                    chunk = self._sock.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    self._finish("closed", "closed", "peer closed (FIN)")
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    last_echo = time.monotonic()
                    self.events.append(TcpEvent(last_echo, "echo", int(line)))
            self._finish("ok", "stopped", "stopped by caller")
        except ConnectionResetError as exc:
            self._finish("reset", "reset", str(exc))
        except OSError as exc:
            self._finish("error", "error", repr(exc))

    @property
    def done(self) -> bool:
        return self.outcome != "running"

    def last_echo(self) -> float | None:
        return next((e.mono for e in reversed(self.events) if e.kind == "echo"), None)

    def wait(self, timeout: float | None = None) -> TcpOutcome:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.outcome

    def close(self) -> None:
        """Stop holding, close the connection; ``events`` and ``outcome`` stay readable. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()

    def stop(self) -> None:
        """``close()``: end the hold now."""
        self.close()
