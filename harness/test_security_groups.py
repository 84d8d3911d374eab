"""Security group rules and ENI checks as the router's nftables rules (pure functions, no namespaces).

The data-plane tests (test_dataplane_security.py) show the rules at work on real packets; these pin
the translation: which rule text each kind of EC2 rule becomes, and what is not enforced.
"""

from __future__ import annotations

import pytest

from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.security_groups import SgRule, eni_rules, group_members, protocol_name, rules_of
from natlab.cloud.vpc_filter import filter_ruleset

GROUP = {
    "GroupId": "sg-nat",
    "IpPermissions": [
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/16"}], "UserIdGroupPairs": []},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]},
        {"IpProtocol": "udp", "FromPort": 1000, "ToPort": 2000, "UserIdGroupPairs": [{"GroupId": "sg-peer"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "50", "IpRanges": [{"CidrIp": "192.0.2.0/24"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    ],
    "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
}
PEER = {"GroupId": "sg-peer", "IpPermissions": [], "IpPermissionsEgress": []}


def _eni(eni_id: str, ip: str, mac: str, groups: list[str], check: bool = True) -> dict:
    return {
        "NetworkInterfaceId": eni_id,
        "PrivateIpAddress": ip,
        "PrivateIpAddresses": [{"PrivateIpAddress": ip}],
        "MacAddress": mac,
        "SourceDestCheck": check,
        "Groups": [{"GroupId": g} for g in groups],
    }


ENIS = {
    "eni-nat": _eni("eni-nat", "10.0.0.4", "02:00:00:00:00:04", ["sg-nat"], check=False),
    "eni-peer": _eni("eni-peer", "10.0.0.9", "02:00:00:00:00:09", ["sg-peer"]),
}
GROUPS = {"sg-nat": GROUP, "sg-peer": PEER}


@pytest.mark.parametrize(
    ("given", "expected"), [("-1", "all"), ("tcp", "tcp"), ("6", "tcp"), ("17", "udp"), ("1", "icmp"), ("50", "50")]
)
def test_ec2_protocols_are_named_one_way(given: str, expected: str) -> None:
    assert protocol_name(given) == expected


def test_each_kind_of_ingress_rule_becomes_one_nft_rule() -> None:
    rules = rules_of(GROUP, "ingress", group_members(ENIS.values()))
    assert [rule.nft("ingress") for rule in rules] == [
        "ip saddr { 10.0.0.0/16 } accept",
        "ip saddr { 198.51.100.0/24 } tcp dport 22 accept",
        "ip saddr { 10.0.0.9/32 } udp dport 1000-2000 accept",  # the peer group: its ENIs' addresses
        "ip saddr { 0.0.0.0/0 } meta l4proto icmp icmp type 8 accept",
        "ip saddr { 192.0.2.0/24 } meta l4proto 50 accept",
        None,  # IPv6 only: matches nothing in the IPv4 lab (stricter than EC2, never looser)
    ]


def test_egress_rules_match_the_destination() -> None:
    (rule,) = rules_of(GROUP, "egress", {})
    assert rule == SgRule("all", None, None, ("0.0.0.0/0",))
    assert rule.nft("egress", "return") == "ip daddr { 0.0.0.0/0 } return"


@pytest.mark.parametrize(
    ("eni", "why"),
    [
        (_eni("eni-x", "10.0.0.5", "02:00:00:00:00:05", ["sg-unknown"]), "a group the emulator does not list"),
        (_eni("eni-x", "10.0.0.5", "02:00:00:00:00:05", []), "no group at all"),
    ],
)
def test_an_eni_whose_groups_are_not_known_is_not_enforced(eni: dict, why: str) -> None:
    assert eni_rules(eni, GROUPS, {}, "ingress") is None, why
    assert "in_eni_x" not in filter_ruleset({"eni-x": eni}, GROUPS), why


def test_ruleset_dispatches_by_next_hop_and_mac_and_checks_sources_of_checked_enis() -> None:
    text = filter_ruleset(ENIS, GROUPS)
    assert "10.0.0.4 : jump in_eni_nat" in text and "02:00:00:00:00:04 : jump out_eni_nat" in text
    assert "set srcdst_checked { type ether_addr; elements = { 02:00:00:00:00:09 }; }" in text, "only the peer"
    assert "02:00:00:00:00:04 . 10.0.0.4" in text and "02:00:00:00:00:09 . 10.0.0.9" in text
    assert 'counter drop comment "eni-nat: no ingress rule matched"' in text
    # A peer group with no rules lets nothing in and nothing out.
    peer_in = text.split("chain in_eni_peer {")[1].split("}")[0]
    assert peer_in.strip().startswith("counter drop")


@pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")
def test_the_ruleset_is_valid_nftables() -> None:
    with Namespace("sgcheck") as ns:
        proc = ns.run(["nft", "-c", "-f", "-"], input=filter_ruleset(ENIS, GROUPS).encode(), check=False)
    assert proc.returncode == 0, proc.stderr.decode()


def test_ruleset_without_enis_still_drops_link_local() -> None:
    text = filter_ruleset({}, {})
    assert 'ip daddr 169.254.0.0/16 counter drop comment "link-local: never routed"' in text
    assert "elements" not in text


def test_two_enis_with_one_address_give_one_map_entry_the_one_in_use() -> None:
    # moto showed a terminated instance's ENI beside its replacement's with the same address: nft
    # refused the whole table ("File exists") and the router stopped following the routes.
    old = _eni("eni-old", "10.0.0.5", "02:00:00:00:00:15", ["sg-nat"], check=False) | {"Status": "available"}
    new = _eni("eni-new", "10.0.0.5", "02:00:00:00:00:25", ["sg-nat"], check=False) | {"Status": "in-use"}
    text = filter_ruleset({"eni-old": old, "eni-new": new}, GROUPS)
    assert "10.0.0.5 : jump in_eni_new" in text
    assert "10.0.0.5 : jump in_eni_old" not in text
    if namespaces_available():
        with Namespace("sgdup") as ns:
            proc = ns.run(["nft", "-c", "-f", "-"], input=text.encode(), check=False)
        assert proc.returncode == 0, proc.stderr.decode()
