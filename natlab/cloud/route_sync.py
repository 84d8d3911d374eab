"""Keep the VPC router's kernel routes and IGW NAT equal to the emulator's route tables, live.

Each round reads the emulator's route tables (one warm boto3 call, ~5 ms; ENIs, instance states and
Elastic IPs, ~25 ms, every ``resource_interval`` or when needed, see ``RouteSync.sync_once``),
computes the wanted kernel state with the pure function ``desired_state`` (``route_model.py``: how
each AWS route target becomes a kernel route) and touches the kernel only where it differs from what
was applied last (one ``ip -batch`` for routes, one ``nft -f`` for the IGW maps of
``igw_nftables.py``). Every change is kept as a ``RouterEvent`` for the failover timeline.

With a ``VpcFilter`` (``vpc_filter.py``), each round also hands it the ENIs it read (security groups
and the source half of the source/dest check), at no extra call.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from natlab.resource import Resource

from . import tools
from .igw_nftables import nft_map_update
from .netns import Namespace
from .route_model import CloudView, SubnetPort, Target, desired_state, fetch_resources, fetch_route_tables
from .vpc_filter import VpcFilter

log = logging.getLogger(__name__)

APPLY_TIMEOUT = 10.0
ERROR_LOG_EVERY = 5.0


@dataclass(frozen=True)
class RouterEvent:
    """One change the router made to its kernel state (or an error), for the timeline."""

    wall: float
    """``time.time()`` when the change was in the kernel."""
    mono: float
    """``time.monotonic()`` at the same moment (compare with probe timestamps)."""
    kind: Literal["route", "nat", "filter", "error"]
    text: str

    def __str__(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.gmtime(self.wall)) + f".{int(self.wall % 1 * 1000):03d}Z"
        return f"{stamp} router: {self.text}"


@dataclass
class SyncStats:
    """How long rounds take (seconds), to report the polling cost."""

    rounds: int = 0
    fetch: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    apply: deque[float] = field(default_factory=lambda: deque(maxlen=500))


class RouteSync(Resource):
    """A thread that mirrors the emulator's routes into ``router``'s kernel every ``interval`` s.

    ``sync_once()`` does one round on the caller's thread (used before the thread starts, so the
    kernel is right when the VPC is handed out). ``kick()`` starts the next round now.
    """

    def __init__(
        self,
        ec2: Any,
        vpc_id: str,
        router: Namespace,
        ports: Iterable[SubnetPort],
        igw: Target,
        attached_ips: Callable[[], set[str]],
        *,
        interval: float = 0.02,
        resource_interval: float = 0.1,
        on_event: Callable[[RouterEvent], None] | None = None,
        vpc_filter: VpcFilter | None = None,
    ) -> None:
        self.vpc_filter = vpc_filter
        self.ec2 = ec2
        self.vpc_id = vpc_id
        self.router = router
        self.ports = list(ports)
        self.igw = igw
        self.attached_ips = attached_ips
        self.interval = interval
        self.resource_interval = resource_interval
        self._view = CloudView([], {}, {})
        self.on_event = on_event
        self.events: list[RouterEvent] = []
        self.stats = SyncStats()
        self.applied_routes: dict[tuple[int, str], tuple[str, Target]] = {}
        self.applied_nat: dict[str, str] = {}
        self._lock = threading.Lock()  # one round at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = 0.0
        self.port_by_table = {p.table: p for p in self.ports}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name=f"route-sync-{self.vpc_id}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (it finishes its round first). Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("route sync thread did not stop within 5 s")

    def kick(self) -> None:
        """Run the next round now instead of after the poll interval."""
        self._wake.set()

    def _loop(self) -> None:
        # The sync's own clock (a periodic loop, not a wait): one round every interval, or at kick().
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sync_once()
            except Exception as exc:  # keep syncing: the emulator may be restarting
                now = time.monotonic()
                if now - self._last_error_log > ERROR_LOG_EVERY:
                    self._last_error_log = now
                    log.warning("route sync round failed: %s", exc)
                    self._record("error", f"sync failed: {exc}")
            remaining = self.interval - (time.monotonic() - started)
            if remaining > 0:
                self._wake.wait(remaining)
            self._wake.clear()

    # -- one round ---------------------------------------------------------------------------------

    def sync_once(self, *, full: bool = False) -> list[RouterEvent]:
        """Fetch, diff, apply; returns the events of this round.

        Route tables are read every round; ENIs and instance states (slower to read) every
        ``resource_interval`` s, when ``full`` is set, and whenever the cached ones would turn a
        route into a blackhole (so a route to a NAT that just became ready is not dropped on stale
        data; a blackhole because the instance left the data plane needs no refresh). A NAT that
        died less than ``resource_interval`` ago may thus keep its route for that long (its
        namespace is gone, so its traffic is lost either way).
        """
        with self._lock:
            start = time.perf_counter()
            tables = fetch_route_tables(self.ec2, self.vpc_id)
            stale = time.monotonic() - self._view.resources_at > self.resource_interval
            self._view.route_tables = tables
            if full or stale:
                self._refresh_resources()
            attached = self.attached_ips()
            routes, nat = desired_state(self._view, self.ports, attached, self.igw)
            if not (full or stale) and self._new_blackholes(routes):
                self._refresh_resources()
                routes, nat = desired_state(self._view, self.ports, attached, self.igw)
            self.stats.rounds += 1
            self.stats.fetch.append(time.perf_counter() - start)
            start = time.perf_counter()
            events = self._apply_routes(routes) + self._apply_nat(nat)
            if self.vpc_filter is not None:
                events += [self._record("filter", text) for text in self.vpc_filter.follow(self._view.enis)]
            if events:
                self.stats.apply.append(time.perf_counter() - start)
            return events

    def _refresh_resources(self) -> None:
        self._view.enis, self._view.instance_states, self._view.addresses = fetch_resources(self.ec2, self.vpc_id)
        self._view.resources_at = time.monotonic()

    def _new_blackholes(self, routes: dict[tuple[int, str], tuple[str, Target]]) -> bool:
        return any(
            target.from_cloud_state and self.applied_routes.get(key, (None, None))[1] != target
            for key, (_, target) in routes.items()
        )

    def _apply_routes(self, wanted: dict[tuple[int, str], tuple[str, Target]]) -> list[RouterEvent]:
        lines, texts = [], []
        for key, (rtb, target) in sorted(wanted.items()):
            if self.applied_routes.get(key, (None, None))[1] == target:
                continue
            table, dst = key
            lines.append(target.command(dst, table))
            arrow = "→" if target.kind == "via" else "→ blackhole:"
            texts.append(
                f"route {rtb} {dst} {arrow} {target.note} [{self.port_by_table[table].subnet_id} table {table}]"
            )
        for key in sorted(set(self.applied_routes) - set(wanted)):
            table, dst = key
            lines.append(f"route del {dst} table {table}")
            texts.append(
                f"route {self.applied_routes[key][0]} {dst} removed "
                f"[{self.port_by_table[table].subnet_id} table {table}]"
            )
        if not lines:
            return []
        self._batch("ip", [tools.tool("ip"), "-n", self.router.name, "-force", "-batch", "-"], lines)
        self.applied_routes = dict(wanted)
        return [self._record("route", text) for text in texts]

    def _apply_nat(self, wanted: dict[str, str]) -> list[RouterEvent]:
        if wanted == self.applied_nat:
            return []
        old = self.applied_nat
        self._batch("nft", [*self.router.exec_prefix(), tools.tool("nft"), "-f", "-"], [nft_map_update(wanted)])
        self.applied_nat = dict(wanted)
        texts = [
            f"igw nat {priv} ↔ {wanted[priv]}" if priv in wanted else f"igw nat {priv} ↔ {old[priv]} removed"
            for priv in sorted(set(old) | set(wanted))
            if old.get(priv) != wanted.get(priv)
        ]
        return [self._record("nat", text) for text in texts]

    def _batch(self, what: str, argv: list[str], lines: list[str]) -> None:
        proc = subprocess.run(
            argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=APPLY_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{what} batch failed ({proc.returncode}): {proc.stderr.strip()} for: {'; '.join(lines)}"
            )

    def _record(self, kind: Literal["route", "nat", "filter", "error"], text: str) -> RouterEvent:
        event = RouterEvent(time.time(), time.monotonic(), kind, text)
        self.events.append(event)
        log.info("%s", event)
        if self.on_event is not None:
            self.on_event(event)
        return event
