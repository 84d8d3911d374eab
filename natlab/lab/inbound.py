"""What a serving NAT lets in, probed with real packets in a lab (its NAT booted the real user data).

``probe_nat(lab, zone)`` runs, against the zone's InService NAT:

- from the emulated internet, to the NAT's public IP (its Elastic IP): TCP and UDP on
  ``SCAN_TCP_PORTS`` / ``SCAN_UDP_PORTS``, with listeners on the same ports in the zone's private
  workload (did anything reach it?);
- from the private workload, to the NAT's private IP on the same TCP ports plus the lab relay's,
  and to ``169.254.169.254:80`` (the workload must not get the NAT's metadata service);
- inside the NAT: every listening socket (``ss``), to show that only the lab's own artifacts listen,
  bound where nothing outside can reach them (the IMDS emulator on 169.254.169.254, the relay to
  the emulator on 127.0.0.1).

The result is data; the scenario (harness/test_failover.py) asserts on it and records it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from natlab.cloud.boot_env import RELAY_PORT
from natlab.cloud.imds import IMDS_ADDRESS
from natlab.cloud.inbound_probes import SCAN_TCP_PORTS, SCAN_UDP_PORTS, Listeners, try_tcp, try_udp
from natlab.cloud.netns import Namespace
from natlab.cloud.vpc_filter import eni_addresses
from natlab.lab.lab import Lab

PROBE_TIMEOUT = 0.7
#: Where the lab's own services inside an instance listen (not the module's: see the module docstring).
LAB_ARTIFACT_ADDRESSES = (IMDS_ADDRESS, "127.0.0.1")


@dataclass
class InboundProbe:
    """What each probe saw (``port -> outcome``, see ``inbound_probes``) and what listens in the NAT."""

    instance_id: str
    public_ip: str
    private_ip: str
    egress_address: str
    from_internet_tcp: dict[int, str]
    from_internet_udp: dict[int, str]
    from_workload_tcp: dict[int, str]
    from_workload_imds: dict[int, str]
    reached_workload: dict[str, list[str]]
    nat_listening: list[str]
    """``address:port/protocol`` of every listening socket inside the NAT."""

    def exposed(self) -> list[str]:
        """Listening sockets of the NAT bound anywhere but the lab's artifact addresses."""
        return [s for s in self.nat_listening if s.rsplit(":", 1)[0].strip("[]") not in LAB_ARTIFACT_ADDRESSES]

    def summary(self) -> str:
        return (
            f"NAT {self.instance_id} public {self.public_ip} private {self.private_ip}; egress seen as "
            f"{self.egress_address}\n  internet -> public IP TCP: {self.from_internet_tcp}\n"
            f"  internet -> public IP UDP: {self.from_internet_udp}\n"
            f"  workload -> NAT private IP TCP: {self.from_workload_tcp}\n"
            f"  workload -> {IMDS_ADDRESS}: {self.from_workload_imds}\n"
            f"  reached the workload: {self.reached_workload or 'nothing'}\n"
            f"  listening inside the NAT: {self.nat_listening}"
        )


def probe_nat(lab: Lab, zone: str) -> InboundProbe:
    """Probe the zone's serving NAT from outside and inside (module docstring). Needs the data plane."""
    vpc = lab.vpc
    if vpc is None:
        raise RuntimeError(f"no data plane: {lab.dataplane_skip_reason}")
    instance_id = lab.current_nat(zone)
    box = lab.sandbox(instance_id)
    if box is None:
        raise RuntimeError(f"{instance_id} has no sandbox")
    eni = lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[lab.primary_eni(instance_id)])["NetworkInterfaces"][
        0
    ]
    private_ip = eni_addresses(eni)[0]
    public_ip = (eni.get("Association") or {}).get("PublicIp") or ""
    workload = vpc.workload(lab.zones[zone].private_subnet_id)
    with Listeners(workload.netns, SCAN_TCP_PORTS, SCAN_UDP_PORTS) as listeners:
        egress = vpc.whoami(workload.subnet_id)
        internet = vpc.internet.ns.path
        tcp = try_tcp(internet, public_ip, SCAN_TCP_PORTS, PROBE_TIMEOUT)
        udp = try_udp(internet, public_ip, SCAN_UDP_PORTS, PROBE_TIMEOUT)
        inside = try_tcp(workload.netns, private_ip, (*SCAN_TCP_PORTS, RELAY_PORT), PROBE_TIMEOUT)
        imds = try_tcp(workload.netns, IMDS_ADDRESS, [80], PROBE_TIMEOUT)
        time.sleep(0.1)  # a datagram that got through would be queued by now
        reached = listeners.reached()
    return InboundProbe(instance_id, public_ip, private_ip, egress, tcp, udp, inside, imds, reached, _listening(box.ns))


def _listening(ns: Namespace) -> list[str]:
    proc = ns.run(["ss", "-H", "-l", "-n", "-t", "-u"], timeout=10, check=True)
    found = []
    for line in proc.stdout.decode().splitlines():
        fields = line.split()
        if len(fields) >= 5:
            found.append(f"{fields[4]}/{fields[0]}")
    return sorted(found)


__all__ = ["SCAN_TCP_PORTS", "SCAN_UDP_PORTS", "InboundProbe", "probe_nat"]
