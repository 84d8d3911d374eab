"""What the emulated VPC lets in: real packets against the NAT's public IP, its security group and
the source/dest check.

Each test builds a moto VPC (public + private subnet, IGW, two "NAT instances" carrying a group like
the module's: ingress from the VPC CIDR, egress anywhere) and an EmulatedVpc over it; the NATs are
namespaces configured the way the boot script configures one (forwarding, masquerade only). The
router enforces the groups and the checks (``natlab/cloud/vpc_filter.py``); its drop counters say
which rule dropped what.
"""

from __future__ import annotations

import logging
import time

import pytest

from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import PRIVATE_CIDR, CloudLab, add_private_subnet, nat_instance, serve_only
from natlab.cloud.inbound_probes import SCAN_TCP_PORTS as TCP_PORTS
from natlab.cloud.inbound_probes import SCAN_UDP_PORTS as UDP_PORTS
from natlab.cloud.inbound_probes import Listeners, send_udp_from, try_tcp, try_udp
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.vpc_filter import LINK_LOCAL_COMMENT, SRC_CHECK_COMMENT
from natlab.waiting import wait_until

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or ""),
]
log = logging.getLogger(__name__)

UNSERVED_CIDR = "10.0.2.0/24"
PROBE_TIMEOUT = 0.7


def _drops(vpc: EmulatedVpc, comment: str) -> int:
    assert vpc.filter is not None
    return vpc.filter.drops().get(comment, 0)


def _ingress_drops(vpc: EmulatedVpc, eni: str) -> int:
    return _drops(vpc, f"{eni}: no ingress rule matched")


def _open_to_the_internet(lab: CloudLab) -> None:
    lab.ec2.authorize_security_group_ingress(
        GroupId=lab.nat_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )


@pytest.mark.parametrize("group", ["module's group", "group open to the internet"])
def test_nothing_from_the_internet_reaches_a_private_host_through_the_nat(
    lab: CloudLab, vpc: EmulatedVpc, record_fault, group: str
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    eip, eni = lab.public_ip[lab.nat_a], lab.eni[lab.nat_a]
    if group != "module's group":
        _open_to_the_internet(lab)  # even then the NAT itself must forward nothing inbound
    with nat_instance(vpc, lab, lab.nat_a), Listeners(vpc.workload().netns, TCP_PORTS, UDP_PORTS) as listeners:
        wanted = "all from 0.0.0.0/0" if group != "module's group" else "ingress all from 10.0.0.0/16,"
        vpc.wait_for_event(rf"filter {eni} .*source/dest check off.*{wanted}")
        vpc.wait_for_event(rf"0\.0\.0\.0/0 → {eni}")
        # Stateful: the server's replies pass although no ingress rule allows 203.0.113.10.
        assert vpc.whoami() == eip, "egress works: the path under test is live"
        internet = vpc.internet.ns.path
        tcp = try_tcp(internet, eip, TCP_PORTS, PROBE_TIMEOUT)
        udp = try_udp(internet, eip, UDP_PORTS, PROBE_TIMEOUT)
        direct = try_tcp(internet, vpc.workload().ip, TCP_PORTS, PROBE_TIMEOUT)
        time.sleep(0.1)  # a datagram that got through would be queued by now
        reached = listeners.reached()
    log.info("inbound to %s (%s): TCP %s; UDP %s; straight to %s: %s", eip, group, tcp, udp, vpc.workload().ip, direct)
    assert reached == {}, f"reached the private workload: {reached}"
    assert "connected" not in tcp.values() and "answered" not in udp.values(), (tcp, udp)
    assert set(direct.values()) == {"no answer"}, f"the IGW passes only public addresses: {direct}"
    if group == "module's group":
        assert set(tcp.values()) == {"no answer"} and set(udp.values()) == {"no answer"}, (tcp, udp)
        assert _ingress_drops(vpc, eni) >= len(TCP_PORTS) + len(UDP_PORTS), "the group dropped them"
    else:  # the NAT's own kernel answers with a reset: nothing listens there, nothing is forwarded
        # (Its ICMP port-unreachable for UDP comes back with the private address inside, which the
        # lab's IGW does not rewrite, so the sender's socket sees no answer.)
        assert set(tcp.values()) == {"refused"}, tcp
    record_fault(
        f"inbound from the internet to the NAT's Elastic IP ({group}): TCP {list(TCP_PORTS)}, UDP {list(UDP_PORTS)};"
        f" TCP straight to the workload's private IP",
        "nothing reached the private workload (listeners on those ports)",
        detail=f"TCP {_summary(tcp)}; UDP {_summary(udp)}; straight: {_summary(direct)}",
    )


def _summary(outcomes: dict[int, str]) -> str:
    by_outcome: dict[str, list[int]] = {}
    for port, outcome in outcomes.items():
        by_outcome.setdefault(outcome, []).append(port)
    return ", ".join(f"{outcome} on {ports}" for outcome, ports in by_outcome.items())


def test_nats_link_local_services_are_not_reachable_from_the_private_subnet(lab: CloudLab, vpc: EmulatedVpc) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    with nat_instance(vpc, lab, lab.nat_a) as nat:
        # What the lab's sandbox runs in every instance: IMDS on 169.254.169.254, relay on 127.0.0.1.
        nat.ip("addr", "add", "169.254.169.254/32", "dev", "lo")
        with Listeners(nat.path, [80], [], host="169.254.169.254"), Listeners(nat.path, [4566], [], host="127.0.0.1"):
            vpc.wait_for_event(rf"0\.0\.0\.0/0 → {lab.eni[lab.nat_a]}")
            assert vpc.whoami() == lab.public_ip[lab.nat_a]
            workload = vpc.workload().netns
            before = _drops(vpc, LINK_LOCAL_COMMENT)
            imds = try_tcp(workload, "169.254.169.254", [80], PROBE_TIMEOUT)
            private = try_tcp(workload, lab_private_ip(vpc, lab), [22, 80, 443, 4566], PROBE_TIMEOUT)
    assert imds == {80: "no answer"}, "169.254.0.0/16 is never routed: the NAT's IMDS stays its own"
    assert _drops(vpc, LINK_LOCAL_COMMENT) > before
    # 169.254.169.254:80 and 127.0.0.1:4566 listen on lo only: the NAT's own address has nothing.
    assert set(private.values()) == {"refused"}, private


def lab_private_ip(vpc: EmulatedVpc, lab: CloudLab) -> str:
    return next(a.ip for a in vpc.attachments.values() if a.instance_id == lab.nat_a)


def test_nat_forwards_only_for_the_cidrs_its_security_group_serves(
    lab: CloudLab, record_fault, request: pytest.FixtureRequest
) -> None:
    unserved = add_private_subnet(lab, UNSERVED_CIDR, route_to=lab.nat_a)
    serve_only(lab, [PRIVATE_CIDR])  # the module with served_cidrs = [the private subnet's CIDR]
    lab.route_private_to(lab.nat_a, create=True)
    eni = lab.eni[lab.nat_a]
    with EmulatedVpc(lab.ec2, lab.vpc_id) as vpc, nat_instance(vpc, lab, lab.nat_a):
        vpc.wait_for_event(rf"filter {eni} .*source/dest check off, ingress all from {PRIVATE_CIDR},")
        vpc.wait_for_event(rf"0\.0\.0\.0/0 → {eni}")
        served = vpc.workload(lab.private_subnet)
        assert vpc.whoami(lab.private_subnet) == lab.public_ip[lab.nat_a], f"served: {served.ip}"
        before = _ingress_drops(vpc, eni)
        with pytest.raises(OSError):
            vpc.whoami(unserved, timeout=0.5)
        assert _ingress_drops(vpc, eni) > before, "the NAT's group dropped the unserved subnet's packets"
        assert vpc.internet.http_clients == [lab.public_ip[lab.nat_a]], "one request got out: the served one"
        # The route was there all along: adding the CIDR to the group is all it takes.
        lab.ec2.authorize_security_group_ingress(
            GroupId=lab.nat_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": UNSERVED_CIDR}]}]
        )
        vpc.wait_for_event(rf"filter {eni} .*ingress all from \S*{UNSERVED_CIDR}")
        assert vpc.whoami(unserved) == lab.public_ip[lab.nat_a]
    record_fault(
        f"HTTP to the internet from a subnet ({UNSERVED_CIDR}) routed to the NAT but outside its served CIDRs",
        "not forwarded (dropped by the NAT's security group); forwarded once the CIDR is allowed",
    )


def test_nat_whose_group_allows_no_egress_forwards_nothing(lab: CloudLab, vpc: EmulatedVpc) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    eni = lab.eni[lab.nat_a]
    with nat_instance(vpc, lab, lab.nat_a):
        vpc.wait_for_event(rf"0\.0\.0\.0/0 → {eni}")
        assert vpc.whoami() == lab.public_ip[lab.nat_a]
        lab.ec2.revoke_security_group_egress(
            GroupId=lab.nat_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        vpc.wait_for_event(rf"filter {eni} .*egress none")
        with pytest.raises(OSError):
            vpc.whoami(timeout=0.5)
        assert _drops(vpc, f"{eni}: no egress rule matched") > 0


#: Outside the VPC CIDR, so that the NAT's masquerade (of the VPC CIDR) leaves it as it is.
SPOOFED_SOURCE = "198.51.100.7"
SPOOF_PORT = 5353


def test_source_dest_check_drops_packets_from_the_eni_with_a_foreign_source(lab: CloudLab, vpc: EmulatedVpc) -> None:
    eni = lab.eni[lab.nat_a]
    with (
        nat_instance(vpc, lab, lab.nat_a, disable_source_dest_check=False) as nat,
        Listeners(vpc.workload().netns, [], [SPOOF_PORT]) as listener,
    ):
        vpc.wait_for_event(rf"filter {eni} .*source/dest check on")
        own = lab_private_ip(vpc, lab)
        workload = vpc.workload().ip

        def arrived_from(source: str) -> list[str]:
            send_udp_from(nat.path, source, workload, SPOOF_PORT)

            def received() -> list[str]:
                found = listener.reached().get(f"udp {SPOOF_PORT}", [])
                if not found:
                    raise LookupError(f"nothing from {source} yet")
                return found

            try:
                return wait_until(received, what=f"datagram from {source}", timeout=0.5, interval=0.01)
            except TimeoutError:
                return []

        assert [p.split(":")[0] for p in arrived_from(own)] == [own], "control: its own source passes"
        before = _drops(vpc, SRC_CHECK_COMMENT)
        assert arrived_from(SPOOFED_SOURCE) == [], "a foreign source is dropped while the check is on"
        assert _drops(vpc, SRC_CHECK_COMMENT) == before + 1
        lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": False})
        vpc.wait_for_event(rf"filter {eni} .*source/dest check off")
        assert [p.split(":")[0] for p in arrived_from(SPOOFED_SOURCE)] == [SPOOFED_SOURCE], "check off: it passes"
        # A serving NAT: the replies it forwards to the workload carry the server's address as source.
        lab.route_private_to(lab.nat_a, create=True)
        vpc.wait_for_event(rf"0\.0\.0\.0/0 → {eni}")
        assert vpc.whoami() == lab.public_ip[lab.nat_a]


def test_the_probe_sees_a_port_forward_on_the_nat(lab: CloudLab, vpc: EmulatedVpc) -> None:
    """The sweep's negative results mean something: a NAT that forwards a port is caught by it."""
    lab.route_private_to(lab.nat_a, create=True)
    _open_to_the_internet(lab)
    workload = vpc.workload()
    with nat_instance(vpc, lab, lab.nat_a) as nat, Listeners(workload.netns, TCP_PORTS, UDP_PORTS) as listeners:
        nat.run(
            ["nft", "-f", "-"],
            input=(
                "table ip portforward {\n chain prerouting {\n"
                "  type nat hook prerouting priority dstnat; policy accept;\n"
                f'  iifname "ens5" tcp dport 8080 dnat to {workload.ip}\n }}\n}}\n'
            ).encode(),
        )
        vpc.wait_for_event(rf"filter {lab.eni[lab.nat_a]} .*source/dest check off.*all from 0\.0\.0\.0/0")
        tcp = try_tcp(vpc.internet.ns.path, lab.public_ip[lab.nat_a], TCP_PORTS, PROBE_TIMEOUT)
        reached = listeners.reached()
    assert tcp[8080] == "connected" and list(reached) == ["tcp 8080"], (tcp, reached)
