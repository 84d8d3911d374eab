"""The failover scenario: break a zone's NAT, wait for the self-heal, and check everything it promises.

`run_failover` never asserts by itself: it returns a `FailoverResult` whose `problems` list says,
in words, each promise that was broken, and whose `timeline` holds what happened. Tests assert on
it, and tests with deliberately broken boot scripts assert that the right problem is found.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from natlab.cloud.probes import TcpHold, UdpStream
from natlab.cloud.sandbox import InstanceSandbox
from natlab.lab.lab import Lab
from natlab.report.timeline import (
    FAULT_INJECTED,
    OUTAGE,
    ROUTE_SWITCHED,
    SOURCE_FAULT,
    SOURCE_PROBE,
    SOURCE_ROUTER,
    Timeline,
)
from natlab.waiting import wait_until

logger = logging.getLogger(__name__)

FAULTS = ("terminate", "stop", "impair")
#: After the replacement's boot script has exited, how long the route may still take to move (the
#: script moves it and completes the launch before it exits: this is only the emulator's lag).
SETTLE_AFTER_BOOT = 1.5
#: How long egress may take to work again once the route moved and the replacement is InService
#: (router sync within 50 ms while watched, ARP, conntrack). With takeover on, a survivor's takeover
#: can land just after a fast replacement's route step; the replacement's watcher takes its tables
#: back within a round or two (README, "A replacement keeps its zone"): 3 s more for that.
EGRESS_RECOVERY = 6.0
#: Once egress works again, how long an established flow's retransmission may take to meet the new
#: NAT (Linux doubles its retransmission timeout from 200 ms: a 3 s outage puts the next one ~3 s out).
TCP_SETTLE = 8.0
#: How often the scenario looks at the emulator while it waits (the route's switch time is one of its figures).
POLL = 0.05
#: How often it reads the group's members while waiting for the routes to move (for a boot that never moves them).
GROUP_POLL = 0.25


@dataclass
class FailoverResult:
    zone: str
    fault: str
    sla: float
    old_instance: str
    old_eni: str
    fault_at: float
    timeline: Timeline
    new_instance: str | None = None
    new_eni: str | None = None
    route_switched_at: float | None = None
    problems: list[str] = field(default_factory=list)
    outage_seconds: float | None = None
    datagrams_lost: int | None = None
    egress_address_after: str | None = None
    tcp_outcome: str | None = None

    @property
    def seconds(self) -> float | None:
        """Fault -> every route of the zone on the replacement's ENI."""
        return None if self.route_switched_at is None else self.route_switched_at - self.fault_at

    def summary(self) -> str:
        took = "never" if self.seconds is None else f"{self.seconds:.2f} s"
        lines = [
            f"{self.zone}: {self.fault} {self.old_instance} -> {self.new_instance}, route moved: {took} "
            f"(SLA {self.sla:.0f} s)"
        ]
        if self.outage_seconds is not None:
            lines.append(
                f"  data-plane outage {self.outage_seconds:.3f} s, {self.datagrams_lost} datagrams lost, "
                f"established TCP: {self.tcp_outcome}, egress after: {self.egress_address_after}"
            )
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def inject(lab: Lab, instance_id: str, fault: str) -> None:
    """Breaks one NAT the way a real failure would."""
    if fault == "terminate":
        lab.ec2.terminate_instances(InstanceIds=[instance_id])
    elif fault == "stop":
        lab.ec2.stop_instances(InstanceIds=[instance_id])
    elif fault == "impair":
        if lab.controller is None:
            raise RuntimeError("an impaired status check can only be modelled on the embedded emulator")
        lab.controller.impair(instance_id)
    else:
        raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    if fault != "impair" and lab.fleet is not None:
        # The instance's namespace dies with it (a stopped or terminated NAT forwards nothing).
        box = lab.sandbox(instance_id)
        if box is not None:
            box.terminate()


def run_failover(lab: Lab, zone: str, fault: str = "terminate", *, measure_outage: bool = True) -> FailoverResult:
    """Breaks the zone's NAT and watches the heal for at most the SLA; returns what happened.

    With the data plane, traffic runs from the zone's private workload through the fault (outage,
    datagrams lost, the held TCP connection's fate), and egress through the replacement is checked.
    ``measure_outage=False`` sends no traffic through the fault, so the NAT being broken need not
    work to begin with (one left by a broken boot script): egress through the replacement is still
    checked.
    """
    old = lab.current_nat(zone)
    others = {z: lab.route_targets(z) for z in lab.zones if z != zone}
    # One timeline per failover, starting just before the fault.
    with lab.watching_closely(), lab.recording() as timeline, contextlib.ExitStack() as running:
        result = FailoverResult(zone, fault, lab.settings.sla, old, lab.primary_eni(old), 0.0, timeline)
        stream = tcp = None
        if lab.vpc is not None and measure_outage:
            subnet = lab.zones[zone].private_subnet_id
            stream = running.enter_context(lab.vpc.udp_stream(subnet, rate=100, duration=lab.settings.sla + 10))
            # No stall limit: the connection's fate is decided when its retransmission meets the new NAT.
            tcp = running.enter_context(
                lab.vpc.tcp_hold(subnet, duration=lab.settings.sla + 10, stall=lab.settings.sla + 10)
            )
            stream.wait_received(10)
        result.fault_at = time.monotonic()
        timeline.mark(FAULT_INJECTED, SOURCE_FAULT, f"{fault} {old}", at=result.fault_at)
        inject(lab, old, fault)
        _wait_for_switch(lab, result)
        if result.route_switched_at is not None:
            _check_replacement(lab, result)
            if lab.vpc is not None:
                _check_egress(lab, result)
        if stream is not None:
            stream.stop()
            _record_outage(result, stream)
        if tcp is not None:
            if result.egress_address_after is not None:
                # Only a replacement that forwards can pick the held flow up: else there is nothing to wait for.
                _settle(tcp, result, TCP_SETTLE)
            tcp.stop()
            result.tcp_outcome = _tcp_fate(tcp, result)
        for other, before in others.items():
            after = lab.route_targets(other)
            if after != before:
                result.problems.append(f"{other}'s routes changed from {before} to {after} (only {zone} failed)")
        _add_boot_logs(lab, result)
    logger.info("%s", result.summary())
    return result


class _SwitchWatch:
    """One look at the zone: has every route moved to a replacement, or will it never?"""

    def __init__(self, lab: Lab, result: FailoverResult) -> None:
        self.lab = lab
        self.result = result
        self.boot_exited_at: float | None = None
        self._enis: dict[str, str] = {}  # an instance's primary ENI never changes: one lookup each
        self._targets: dict[str, str | None] | None = None
        self._states: dict[str, str] = {}
        self._states_at = 0.0

    def __call__(self) -> str | None:
        lab, result = self.lab, self.result
        targets = lab.route_targets(result.zone)
        # The group's members are read again when the routes change, else at most every GROUP_POLL.
        if targets != self._targets or time.monotonic() - self._states_at > GROUP_POLL:
            self._targets, self._states = targets, lab.group_instances(result.zone)
            self._states_at = time.monotonic()
        states = self._states
        for instance in [i for i, state in states.items() if state == "InService"] or list(states):
            if instance == result.old_instance:
                continue
            eni = self._enis.get(instance) or self._enis.setdefault(instance, lab.primary_eni(instance))
            if set(targets.values()) == {eni}:
                result.new_instance, result.new_eni = instance, eni
                result.route_switched_at = time.monotonic()
                result.timeline.mark(
                    ROUTE_SWITCHED, SOURCE_ROUTER, f"{sorted(targets)} -> {eni}", at=result.route_switched_at
                )
                return "switched"
            box = lab.sandbox(instance)
            # A boot that failed abandons its launch and Auto Scaling tries again: keep waiting then.
            # A boot that began before the fault is an earlier life (a warm instance's preparation).
            if _booted_after_fault(box, result) and box.exit_code == 0 and self.boot_exited_at is None:
                self.boot_exited_at = time.monotonic()
                result.new_instance, result.new_eni = instance, eni
        if self.boot_exited_at is not None and time.monotonic() - self.boot_exited_at > SETTLE_AFTER_BOOT:
            return "boot script done"  # and nothing else would move the route
        return None


def _booted_after_fault(box: InstanceSandbox | None, result: FailoverResult) -> bool:
    """A sandbox of this failover: not an earlier life of the instance (a warm pool's preparation)."""
    if box is None or box.terminated or box.started_at is None:
        return False
    fault_wall = time.time() - (time.monotonic() - result.fault_at)
    return box.started_at >= fault_wall - 0.05


def _wait_for_switch(lab: Lab, result: FailoverResult) -> None:
    """Until every route of the zone targets a replacement's ENI, the SLA ends, or it never will."""
    watch = _SwitchWatch(lab, result)
    with contextlib.suppress(TimeoutError):
        remaining = result.fault_at + result.sla - time.monotonic()
        wait_until(watch, what=f"routes of {result.zone} on a replacement", timeout=remaining, interval=POLL)
    if result.route_switched_at is not None:
        return
    targets = lab.route_targets(result.zone)
    result.problems.append(
        f"routes of {result.zone} still target {sorted(set(targets.values()), key=str)}, not the replacement's "
        f"ENI {result.new_eni or '(no replacement booted)'}, "
        f"{'after its boot script exited' if watch.boot_exited_at else f'within the {result.sla:.0f} s SLA'}"
    )


def _echoed_after_switch(tcp: TcpHold, result: FailoverResult) -> bool:
    switched = result.route_switched_at
    return switched is not None and any(e.kind == "echo" and e.mono > switched for e in tcp.events)


def _settle(tcp: TcpHold, result: FailoverResult, timeout: float) -> None:
    """Until the held connection resumes through the new NAT, ends, or ``timeout`` passes."""
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: tcp.done or _echoed_after_switch(tcp, result),
            what="the held TCP connection to resume or end",
            timeout=timeout,
            interval=POLL,
        )


def _tcp_fate(tcp: TcpHold, result: FailoverResult) -> str:
    """ "survived" (echoes again after the switch), "silent" (still open, no echo), or how it ended."""
    if tcp.outcome != "ok":
        return tcp.outcome  # reset, closed, stall, error
    return "survived" if _echoed_after_switch(tcp, result) else "silent"


def _check_replacement(lab: Lab, result: FailoverResult) -> None:
    """Everything besides the route that the boot script promises."""
    assert result.new_instance and result.new_eni
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[result.new_eni])["NetworkInterfaces"][0]
    if eni.get("SourceDestCheck", True):
        result.problems.append(f"source/dest check is still on for {result.new_eni}: EC2 drops forwarded traffic")
    try:
        serving = _wait_in_service(lab, result)
    except TimeoutError as error:
        serving = lab.in_service(result.zone)
        result.problems.append(str(error))
    if serving != [result.new_instance]:
        result.problems.append(f"expected only {result.new_instance} InService, found {serving}")
    zone = lab.zones[result.zone]
    if zone.eip_allocation_id:
        address = lab.ec2.describe_addresses(AllocationIds=[zone.eip_allocation_id])["Addresses"][0]
        if address.get("NetworkInterfaceId") != result.new_eni:
            result.problems.append(
                f"Elastic IP {zone.eip_allocation_id} is on {address.get('NetworkInterfaceId')}, "
                f"not on the replacement's {result.new_eni}"
            )
    if zone.alarm_name:
        # The alarm watches the group, so no instance has to re-point it (README, security model).
        alarm = lab.backend.client("cloudwatch").describe_alarms(AlarmNames=[zone.alarm_name])["MetricAlarms"][0]
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        if dimensions != {"AutoScalingGroupName": zone.asg_name}:
            result.problems.append(f"alarm {zone.alarm_name} watches {dimensions}, not the group {zone.asg_name}")


def _wait_in_service(lab: Lab, result: FailoverResult) -> list[str]:
    """Waits for the replacement to be the zone's only InService instance.

    The lifecycle hook keeps it in Pending:Wait until its boot script's last step says CONTINUE, so
    wait for that (within the SLA), and give up a little after the script has exited.
    """
    instance = result.new_instance
    exited_at: float | None = None

    def only_the_replacement() -> list[str] | None:
        nonlocal exited_at
        serving = lab.in_service(result.zone)
        if serving == [instance]:
            return serving
        box = lab.sandbox(instance) if instance else None
        if exited_at is None and _booted_after_fault(box, result) and box.exit_code is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > SETTLE_AFTER_BOOT:
            raise TimeoutError(f"its boot script exited {SETTLE_AFTER_BOOT:.0f} s ago")
        return None

    try:
        return wait_until(
            only_the_replacement,
            what=f"{instance} as the only InService instance of {result.zone}",
            timeout=max(0.0, result.fault_at + result.sla - time.monotonic()),
            interval=POLL,
            max_interval=4 * POLL,
            retry_on=(),
        )
    except TimeoutError as error:
        found = lab.in_service(result.zone)
        raise TimeoutError(f"{instance} not the only InService instance of {result.zone} (found {found})") from error


def _check_egress(lab: Lab, result: FailoverResult) -> None:
    """Real packets: the private workload reaches the internet again, through the replacement."""
    assert lab.vpc is not None and result.new_eni is not None
    vpc = lab.vpc
    subnet = lab.zones[result.zone].private_subnet_id
    expected = _public_ip(lab, result.new_eni)
    seen: list[str | OSError] = []

    def through_the_replacement() -> str | None:
        try:
            seen.append(vpc.whoami(subnet, timeout=0.5))
        except OSError as error:
            seen.append(error)
        return expected if seen[-1] == expected else None

    try:
        result.egress_address_after = wait_until(
            through_the_replacement, what=f"egress from {subnet}", timeout=EGRESS_RECOVERY, interval=POLL
        )
    except TimeoutError:
        result.problems.append(
            f"egress from {subnet} does not work through the replacement: the internet saw "
            f"{seen[-1] if seen else 'nothing'!r}, expected its public address {expected}"
        )


def _public_ip(lab: Lab, eni_id: str) -> str | None:
    addresses = lab.ec2.describe_addresses(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])
    for address in addresses["Addresses"]:
        return address["PublicIp"]
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return eni.get("Association", {}).get("PublicIp")


def _record_outage(result: FailoverResult, stream: UdpStream) -> None:
    gaps = [g for g in stream.result.gaps() if g.end != float("inf") and g.start >= result.fault_at - 0.05]
    result.datagrams_lost = sum(g.lost for g in gaps)
    if gaps:
        start, end = gaps[0].start, max(g.end for g in gaps)
        result.outage_seconds = end - start
        result.timeline.add_span(OUTAGE, start, end, SOURCE_PROBE, f"{result.datagrams_lost} datagrams lost")
    else:
        result.outage_seconds = 0.0


def _add_boot_logs(lab: Lab, result: FailoverResult) -> None:
    for instance in (result.old_instance, result.new_instance):
        box = lab.sandbox(instance) if instance else None
        if box is not None:
            with contextlib.suppress(Exception):
                result.timeline.add_boot_log(instance, box.boot_log())
