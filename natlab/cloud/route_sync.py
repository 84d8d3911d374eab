"""Keep the VPC router's kernel routes and IGW NAT equal to the emulator's route tables, live.

Each round reads the emulator's route tables (one warm boto3 call, ~5 ms; ENIs, instance states and
Elastic IPs, ~25 ms, every ``resource_interval`` or when needed, see ``RouteSync.sync_once``),
computes the wanted kernel state with the pure function ``desired_state`` and touches the kernel
only where it differs from what was applied last (one ``ip -batch`` for routes, one ``nft -f``
for the IGW maps). Every change is kept as a ``RouterEvent`` for the failover timeline.

How an AWS route target becomes a kernel route in the subnet's table:

- ``local`` / VPC CIDR: the subnets' on-link routes (installed once by the router, not here);
- ``igw-*``: via the internet link; the IGW's 1:1 NAT (private <-> public IP of every ENI that has a
  public IP or Elastic IP) lives in nftables maps kept here; traffic from an address without a public
  IP is dropped on the way out, as AWS does;
- ``eni-*`` (or an instance id): via that ENI's private IP on its subnet's bridge, but ``blackhole``
  when the ENI's instance is not running or not plugged into the data plane (a dead ENI: AWS shows
  the route as ``blackhole``), and ``blackhole`` too while the ENI's source/dest check is still on
  (AWS delivers only traffic addressed to the instance itself to such an ENI);
- anything else (NAT gateway, peering, transit gateway...): ``blackhole``, not emulated.

With a ``VpcFilter`` (``vpc_filter.py``), each round also hands it the ENIs it read (security groups
and the source half of the source/dest check), at no extra call.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from natlab.resource import Resource

from . import tools
from .netns import Namespace
from .vpc_filter import VpcFilter

log = logging.getLogger(__name__)

NFT_TABLE = "natlab"
APPLY_TIMEOUT = 10.0
ERROR_LOG_EVERY = 5.0


@dataclass(frozen=True)
class SubnetPort:
    """A subnet as the router sees it: its bridge and its policy-routing table."""

    subnet_id: str
    cidr: str
    bridge: str
    table: int


@dataclass(frozen=True)
class Target:
    """What a kernel route in a subnet's table does: forward ``via`` a next hop, or drop."""

    kind: Literal["via", "blackhole"]
    via: str | None = None
    dev: str | None = None
    note: str = ""
    from_cloud_state: bool = False
    """A blackhole decided on ENI/instance data (stale by up to ``resource_interval``)."""

    def command(self, dst: str, table: int) -> str:
        """The ``ip route`` batch line that installs this target for ``dst`` in ``table``."""
        if self.kind == "blackhole":
            return f"route replace blackhole {dst} table {table}"
        return f"route replace {dst} via {self.via} dev {self.dev} table {table} onlink"


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
class CloudView:
    """The slice of the emulator's EC2 state the data plane follows."""

    route_tables: list[dict[str, Any]]
    enis: dict[str, dict[str, Any]]
    instance_states: dict[str, str]
    addresses: list[dict[str, Any]] = field(default_factory=list)
    resources_at: float = 0.0
    """``time.monotonic()`` when ``enis`` and ``instance_states`` were read."""


def fetch_route_tables(ec2: Any, vpc_id: str) -> list[dict[str, Any]]:
    """The VPC's route tables (one call, ~5 ms warm against moto)."""
    return ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]


def fetch_resources(ec2: Any, vpc_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
    """The VPC's ENIs by id, its instances' states by id, and the account's Elastic IPs
    (three calls, ~25 ms warm)."""
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    enis = ec2.describe_network_interfaces(Filters=vpc_filter)["NetworkInterfaces"]
    reservations = ec2.describe_instances(Filters=vpc_filter)["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    addresses = ec2.describe_addresses()["Addresses"]
    return {e["NetworkInterfaceId"]: e for e in enis}, states, addresses


def public_ips(eni: Mapping[str, Any]) -> dict[str, str]:
    """``{private IP: public IP}`` for every address of ``eni`` that has a public IP or EIP."""
    mapping = {}
    for addr in eni.get("PrivateIpAddresses") or []:
        public = (addr.get("Association") or {}).get("PublicIp")
        if public:
            mapping[addr["PrivateIpAddress"]] = public
    top = (eni.get("Association") or {}).get("PublicIp")
    if top and eni.get("PrivateIpAddress"):
        mapping.setdefault(eni["PrivateIpAddress"], top)
    return mapping


def table_for_subnet(route_tables: Iterable[Mapping[str, Any]], subnet_id: str) -> Mapping[str, Any] | None:
    """The route table associated with ``subnet_id``, else the VPC's main route table."""
    main = None
    for table in route_tables:
        for assoc in table.get("Associations") or []:
            if assoc.get("SubnetId") == subnet_id:
                return table
            if assoc.get("Main"):
                main = table
    return main


def _eni_target(eni_id: str, view: CloudView, bridges: Mapping[str, str], attached_ips: set[str]) -> Target:
    eni = view.enis.get(eni_id)
    if eni is None:
        return Target("blackhole", note=f"{eni_id} (no such ENI)", from_cloud_state=True)
    ip = eni.get("PrivateIpAddress", "?")
    instance_id = (eni.get("Attachment") or {}).get("InstanceId")
    state = view.instance_states.get(instance_id or "", "detached" if not instance_id else "gone")
    if state != "running":
        return Target("blackhole", note=f"{eni_id} ({ip}) dead: instance {instance_id} {state}", from_cloud_state=True)
    if ip not in attached_ips:
        return Target("blackhole", note=f"{eni_id} ({ip}) dead: instance {instance_id} not on the data plane")
    if eni.get("SourceDestCheck", True):
        return Target("blackhole", note=f"{eni_id} ({ip}) drop: source/dest check is on", from_cloud_state=True)
    dev = bridges.get(eni.get("SubnetId", ""))
    if dev is None:
        return Target("blackhole", note=f"{eni_id} ({ip}) in a subnet the router does not serve")
    return Target("via", via=ip, dev=dev, note=f"{eni_id} ({ip})")


def route_target(
    route: Mapping[str, Any], view: CloudView, bridges: Mapping[str, str], attached_ips: set[str], igw: Target
) -> Target | None:
    """The kernel target for one emulator route; None for the ``local`` route."""
    gateway = route.get("GatewayId", "")
    if gateway == "local":
        return None
    if gateway.startswith("igw-"):
        return Target(igw.kind, igw.via, igw.dev, note=gateway)
    eni_id = route.get("NetworkInterfaceId")
    if not eni_id and route.get("InstanceId"):
        eni_id = next(
            (
                e["NetworkInterfaceId"]
                for e in view.enis.values()
                if (e.get("Attachment") or {}).get("InstanceId") == route["InstanceId"]
                and (e.get("Attachment") or {}).get("DeviceIndex") == 0
            ),
            None,
        )
    if eni_id:
        return _eni_target(eni_id, view, bridges, attached_ips)
    others = {k: v for k, v in route.items() if k.endswith("Id") and v}
    return Target("blackhole", note=f"unsupported target {others or route}")


def desired_state(
    view: CloudView, ports: Iterable[SubnetPort], attached_ips: set[str], igw: Target
) -> tuple[dict[tuple[int, str], tuple[str, Target]], dict[str, str]]:
    """Wanted kernel state: ``{(table, dst): (route table id, target)}`` and ``{private: public}``."""
    ports = list(ports)
    bridges = {p.subnet_id: p.bridge for p in ports}
    routes: dict[tuple[int, str], tuple[str, Target]] = {}
    for port in ports:
        table = table_for_subnet(view.route_tables, port.subnet_id)
        if table is None:
            continue
        for route in table.get("Routes") or []:
            dst = route.get("DestinationCidrBlock")
            if not dst:
                continue  # IPv6 and prefix-list routes are not emulated
            target = route_target(route, view, bridges, attached_ips, igw)
            if target is not None:
                routes[(port.table, str(ipaddress.ip_network(dst)))] = (table["RouteTableId"], target)
    return routes, igw_nat(view)


def igw_nat(view: CloudView) -> dict[str, str]:
    """The IGW's 1:1 NAT, ``{private IP: public IP}``, for the ENIs of the VPC.

    Elastic IPs come from ``describe_addresses`` (authoritative: after a reassociation moto still
    shows the EIP on the old ENI too); an EIP replaces the ENI's auto-assigned public IP.
    """
    vpc_ips = {addr["PrivateIpAddress"] for eni in view.enis.values() for addr in eni.get("PrivateIpAddresses") or []}
    eips = {a["PublicIp"]: a.get("PrivateIpAddress") for a in view.addresses}
    nat: dict[str, str] = {}
    for eni in view.enis.values():
        for private, public in public_ips(eni).items():
            if public not in eips:
                nat[private] = public
    for public, private in sorted(eips.items()):
        if private and private in vpc_ips:
            nat[private] = public
    return nat


def nft_ruleset(igw_dev: str) -> str:
    """The router's nftables table: the IGW's 1:1 NAT, driven by two maps and a set kept by ``RouteSync``.

    Stateless, as on AWS: the gateway rewrites addresses one to one (never ports), with no
    connection state. A flow that moves to another NAT instance carrying the same Elastic IP
    therefore leaves with the same public address and port. (The router's conntrack serves only
    the security groups, ``vpc_filter.py``; the inbound rewrite runs before it, at ``raw``
    priority, so that it tracks the private address a reply is delivered to.)
    """
    return f"""
table ip {NFT_TABLE} {{
    map igw_in {{ type ipv4_addr : ipv4_addr; }}
    map igw_out {{ type ipv4_addr : ipv4_addr; }}
    set igw_private {{ type ipv4_addr; }}
    chain igw_rewrite_in {{
        type filter hook prerouting priority raw; policy accept;
        iifname "{igw_dev}" ip daddr set ip daddr map @igw_in
    }}
    chain igw_filter {{
        type filter hook forward priority filter; policy accept;
        oifname "{igw_dev}" ip saddr != @igw_private counter drop comment "IGW: no public IP"
        iifname "{igw_dev}" ip daddr != @igw_private counter drop comment "IGW: not addressed to a public IP"
    }}
    chain igw_rewrite_out {{
        type filter hook postrouting priority mangle; policy accept;
        oifname "{igw_dev}" ip saddr set ip saddr map @igw_out
    }}
}}
"""


def _nft_map_update(nat: Mapping[str, str]) -> str:
    lines = [
        f"flush map ip {NFT_TABLE} igw_in",
        f"flush map ip {NFT_TABLE} igw_out",
        f"flush set ip {NFT_TABLE} igw_private",
    ]
    if nat:
        lines.append(
            f"add element ip {NFT_TABLE} igw_in {{ "
            + ", ".join(f"{pub} : {priv}" for priv, pub in sorted(nat.items()))
            + " }"
        )
        lines.append(
            f"add element ip {NFT_TABLE} igw_out {{ "
            + ", ".join(f"{priv} : {pub}" for priv, pub in sorted(nat.items()))
            + " }"
        )
        lines.append(f"add element ip {NFT_TABLE} igw_private {{ " + ", ".join(sorted(nat)) + " }")
    return "\n".join(lines) + "\n"


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
        self._batch("nft", [*self.router.exec_prefix(), tools.tool("nft"), "-f", "-"], [_nft_map_update(wanted)])
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
