"""The reboot scenario (issue 11): RebootInstances on a zone's serving NAT with a UDP stream through it.

What a reboot keeps and loses is modelled by the fleet (``natlab.cloud.reboots``); this runs it and
records what a scenario asserts: the zone's route targets seen while it rebooted, the group's
instances before and after, the unit's run, the address the internet sees afterwards and the
data-plane outage.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from natlab.cloud.sandbox import InstanceSandbox
from natlab.lab.lab import Lab
from natlab.waiting import wait_until

#: Echoes a second through the NAT: a gap is measured to 10 ms.
UDP_RATE = 100
#: After the restarted unit exits: how long the internet may take to see the NAT's address again.
EGRESS_TIMEOUT = 10.0


@dataclass
class RebootResult:
    instance_id: str
    eni: str
    public_ip: str | None
    group_before: dict[str, str]
    group_after: dict[str, str] = field(default_factory=dict)
    route_targets_seen: set[str | None] = field(default_factory=set)
    box: InstanceSandbox | None = None
    """The sandbox the fleet restarted (its units' run)."""
    egress_address: str | None = None
    datagrams_lost: int | None = None
    outage_seconds: float | None = None
    """The largest gap of the UDP stream: first datagram lost -> first echo again."""
    seconds: float = 0.0
    """RebootInstances -> the unit's run ended."""

    def summary(self) -> str:
        return (
            f"reboot of {self.instance_id} ({self.eni}): group {self.group_before} -> {self.group_after}; "
            f"route targets seen {sorted(map(str, self.route_targets_seen))}; egress {self.egress_address} "
            f"(public IP {self.public_ip}); lost {self.datagrams_lost}, outage {self.outage_seconds}; "
            f"unit ran in {self.seconds:.2f} s\n{self.box.describe() if self.box else '(no restarted sandbox)'}"
        )


def reboot_nat(lab: Lab, zone: str) -> RebootResult:
    """Reboots the zone's serving NAT with traffic through it and waits until its unit has run."""
    assert lab.fleet is not None and lab.vpc is not None, "a reboot needs the lab's fleet and data plane"
    instance = lab.wait_until_serving(zone, timeout=lab.settings.sla)
    before = lab.sandbox(instance)
    eni = lab.primary_eni(instance)
    result = RebootResult(instance, eni, public_ip(lab, eni), lab.group_instances(zone))
    subnet = lab.zones[zone].private_subnet_id
    with lab.watching_closely(), contextlib.ExitStack() as traffic:
        stream = traffic.enter_context(lab.vpc.udp_stream(subnet, rate=UDP_RATE, duration=60))
        stream.wait_received(10)
        started = time.monotonic()
        lab.ec2.reboot_instances(InstanceIds=[instance])

        def unit_ran() -> InstanceSandbox | None:
            result.route_targets_seen.update(lab.route_targets(zone).values())  # polled through the reboot
            box = lab.sandbox(instance)
            return box if box is not before and box is not None and box.exit_code is not None else None

        result.box = wait_until(unit_ran, what=f"{instance} rebooted", timeout=lab.settings.sla, interval=0.05)
        result.seconds = time.monotonic() - started
        vpc = lab.vpc

        def egress() -> bool:
            result.egress_address = vpc.whoami(subnet, timeout=0.5)
            return result.egress_address == result.public_ip

        with contextlib.suppress(TimeoutError):
            wait_until(egress, what="egress through the rebooted NAT", timeout=EGRESS_TIMEOUT, retry_on=(OSError,))
            stream.wait_received(len(stream.result.received) + 10)  # the stream flows again
        stream.stop()
    gaps = [g for g in stream.result.gaps() if g.end != float("inf")]
    result.datagrams_lost = sum(g.lost for g in gaps)
    result.outage_seconds = max((g.duration for g in gaps), default=0.0)
    result.route_targets_seen.update(lab.route_targets(zone).values())
    result.group_after = lab.group_instances(zone)
    return result


def public_ip(lab: Lab, eni_id: str) -> str | None:
    """The address the internet sees for ``eni_id``: its Elastic IP, else its auto-assigned public IP."""
    addresses = lab.ec2.describe_addresses(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])
    for address in addresses["Addresses"]:
        return address["PublicIp"]
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return eni.get("Association", {}).get("PublicIp")
