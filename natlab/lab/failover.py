"""The failover scenario: break a zone's NAT, wait for the self-heal, and check everything it promises.

`run_failover` never asserts by itself: it returns a `FailoverResult` whose `problems` list says,
in words, each promise that was broken. Tests assert on it, and tests with deliberately broken
boot scripts assert that the right problem is found.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

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

logger = logging.getLogger(__name__)

FAULTS = ("terminate", "stop", "impair")
#: After the replacement's boot script has exited, how long the route may still take to move.
SETTLE_AFTER_BOOT = 3.0
#: How long egress may take to work again once the route moved (router sync, ARP, conntrack).
EGRESS_RECOVERY = 5.0
#: Once egress works again, how long an established flow's retransmission may take to meet the new
#: NAT (Linux doubles its retransmission timeout from 200 ms: a 3 s outage puts the next one ~3 s out).
TCP_SETTLE = 8.0


@dataclass
class FailoverResult:
    zone: str
    fault: str
    sla: float
    old_instance: str
    old_eni: str
    fault_at: float
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


def run_failover(lab: Lab, zone: str, fault: str = "terminate", *, probes: bool = True) -> FailoverResult:
    """Breaks the zone's NAT and watches the heal for at most the SLA; returns what happened.

    ``probes=False`` skips the data plane (for putting a healthy NAT back after a broken one, when
    egress does not work to begin with).
    """
    old = lab.current_nat(zone)
    lab.timeline = Timeline()  # one chart per failover, starting just before the fault
    result = FailoverResult(zone, fault, lab.settings.sla, old, lab.primary_eni(old), fault_at=0.0)
    others = {z: lab.route_targets(z) for z in lab.zones if z != zone}
    with contextlib.ExitStack() as running:
        stream = tcp = None
        if lab.vpc is not None and probes:
            subnet = lab.zones[zone].private_subnet_id
            stream = running.enter_context(lab.vpc.udp_stream(subnet, rate=100, duration=lab.settings.sla + 10))
            # No stall limit: the connection's fate is decided when its retransmission meets the new NAT.
            tcp = running.enter_context(
                lab.vpc.tcp_hold(subnet, duration=lab.settings.sla + 10, stall=lab.settings.sla + 10)
            )
            stream.wait_received(10)
        result.fault_at = time.monotonic()
        lab.timeline.mark(FAULT_INJECTED, SOURCE_FAULT, f"{fault} {old}", at=result.fault_at)
        inject(lab, old, fault)
        _wait_for_switch(lab, result)
        if result.route_switched_at is not None:
            _check_replacement(lab, result)
            if stream is not None:
                _check_egress(lab, result)
        if stream is not None:
            stream.stop()
            _record_outage(lab, result, stream)
        if tcp is not None:
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


def _wait_for_switch(lab: Lab, result: FailoverResult) -> None:
    """Polls until every route of the zone targets a replacement's ENI, the SLA ends, or it never will."""
    deadline = result.fault_at + result.sla
    boot_exited_at: float | None = None
    while time.monotonic() < deadline:
        targets = lab.route_targets(result.zone)
        for instance in lab.in_service(result.zone) or _launched(lab, result.zone):
            if instance == result.old_instance:
                continue
            eni = lab.primary_eni(instance)
            if set(targets.values()) == {eni}:
                result.new_instance, result.new_eni = instance, eni
                result.route_switched_at = time.monotonic()
                lab.timeline.mark(
                    ROUTE_SWITCHED, SOURCE_ROUTER, f"{sorted(targets)} -> {eni}", at=result.route_switched_at
                )
                return
            box = lab.sandbox(instance)
            # A boot that failed abandons its launch and Auto Scaling tries again: keep waiting then.
            if box is not None and box.exit_code == 0 and boot_exited_at is None:
                boot_exited_at = time.monotonic()
                result.new_instance, result.new_eni = instance, eni
        if boot_exited_at is not None and time.monotonic() - boot_exited_at > SETTLE_AFTER_BOOT:
            # The replacement's boot script is done and nothing else would move the route.
            break
        time.sleep(0.05)
    targets = lab.route_targets(result.zone)
    result.problems.append(
        f"routes of {result.zone} still target {sorted(set(targets.values()), key=str)}, not the replacement's "
        f"ENI {result.new_eni or '(no replacement booted)'}, "
        f"{'after its boot script exited' if boot_exited_at else f'within the {result.sla:.0f} s SLA'}"
    )


def _echoed_after_switch(tcp: Any, result: FailoverResult) -> bool:
    switched = result.route_switched_at
    return switched is not None and any(e.kind == "echo" and e.mono > switched for e in tcp.events)


def _settle(tcp: Any, result: FailoverResult, timeout: float) -> None:
    """Until the held connection resumes through the new NAT, ends, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not tcp.done and not _echoed_after_switch(tcp, result) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tcp_fate(tcp: Any, result: FailoverResult) -> str:
    """ "survived" (echoes again after the switch), "silent" (still open, no echo), or how it ended."""
    if tcp.outcome != "ok":
        return tcp.outcome  # reset, closed, stall, error
    return "survived" if _echoed_after_switch(tcp, result) else "silent"


def _launched(lab: Lab, zone: str) -> list[str]:
    group = lab.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[lab.zones[zone].asg_name])[
        "AutoScalingGroups"
    ][0]
    return [i["InstanceId"] for i in group["Instances"]]


def _check_replacement(lab: Lab, result: FailoverResult) -> None:
    """Everything besides the route that the boot script promises."""
    assert result.new_instance and result.new_eni
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[result.new_eni])["NetworkInterfaces"][0]
    if eni.get("SourceDestCheck", True):
        result.problems.append(f"source/dest check is still on for {result.new_eni}: EC2 drops forwarded traffic")
    try:
        serving = _poll_in_service(lab, result)
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
        alarm = lab.backend.client("cloudwatch").describe_alarms(AlarmNames=[zone.alarm_name])["MetricAlarms"][0]
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        if dimensions.get("InstanceId") != result.new_instance:
            result.problems.append(
                f"alarm {zone.alarm_name} watches {dimensions.get('InstanceId')}, "
                f"not the replacement {result.new_instance}"
            )


def _poll_in_service(lab: Lab, result: FailoverResult) -> list[str]:
    """Waits for the replacement to be the zone's only InService instance.

    The lifecycle hook keeps it in Pending:Wait until its boot script's last step says CONTINUE, so
    wait for that (within the SLA), and give up a little after the script has exited.
    """
    instance = result.new_instance
    deadline = result.fault_at + result.sla
    exited_at: float | None = None
    while True:
        serving = lab.in_service(result.zone)
        if serving == [instance]:
            return serving
        box = lab.sandbox(instance) if instance else None
        if exited_at is None and box is not None and box.exit_code is not None:
            exited_at = time.monotonic()
        now = time.monotonic()
        if now > deadline or (exited_at is not None and now - exited_at > SETTLE_AFTER_BOOT):
            raise TimeoutError(f"{instance} not the only InService instance of {result.zone} (found {serving})")
        time.sleep(0.05)


def _check_egress(lab: Lab, result: FailoverResult) -> None:
    """Real packets: the private workload reaches the internet again, through the replacement."""
    assert lab.vpc is not None
    subnet = lab.zones[result.zone].private_subnet_id
    expected = _public_ip(lab, result.new_eni)
    deadline = time.monotonic() + EGRESS_RECOVERY
    seen: str | Exception = "nothing"
    while time.monotonic() < deadline:
        try:
            seen = lab.vpc.whoami(subnet, timeout=0.5)
            if seen == expected:
                result.egress_address_after = seen
                return
        except OSError as error:
            seen = error
        time.sleep(0.05)
    result.problems.append(
        f"egress from {subnet} does not work through the replacement: the internet saw "
        f"{seen!r}, expected its public address {expected}"
    )


def _public_ip(lab: Lab, eni_id: str) -> str | None:
    addresses = lab.ec2.describe_addresses(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])
    for address in addresses["Addresses"]:
        return address["PublicIp"]
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return eni.get("Association", {}).get("PublicIp")


def _record_outage(lab: Lab, result: FailoverResult, stream: Any) -> None:
    gaps = [g for g in stream.result.gaps() if g.end != float("inf") and g.start >= result.fault_at - 0.05]
    result.datagrams_lost = sum(g.lost for g in gaps)
    if gaps:
        start, end = gaps[0].start, max(g.end for g in gaps)
        result.outage_seconds = end - start
        lab.timeline.add_span(OUTAGE, start, end, SOURCE_PROBE, f"{result.datagrams_lost} datagrams lost")
    else:
        result.outage_seconds = 0.0


def _add_boot_logs(lab: Lab, result: FailoverResult) -> None:
    for instance in (result.old_instance, result.new_instance):
        box = lab.sandbox(instance) if instance else None
        if box is not None:
            with contextlib.suppress(Exception):
                lab.timeline.add_boot_log(instance, box.boot_log())
