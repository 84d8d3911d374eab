"""Security group rules as nftables rules: what EC2 lets into (and out of) an ENI.

Pure functions over the emulator's answers (``DescribeSecurityGroups``, ``DescribeNetworkInterfaces``);
``vpc_filter.py`` puts their output into the router's kernel.

What is modelled, as the VPC user guide's "Security group rules" page documents it
(https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html):

- rules only allow; traffic matching no rule of any of the ENI's groups is dropped;
- a rule is a protocol (``-1`` all, ``tcp``, ``udp``, ``icmp`` or a protocol number), a port range
  (for ICMP: type and code, ``-1`` any) and sources: IPv4 CIDRs and other groups (a group stands
  for the private IPv4 addresses of the ENIs that carry it);
- the groups are stateful: the state itself (conntrack) is the router's, see ``vpc_filter.py``.

Not modelled: IPv6 ranges and prefix lists (the emulated VPC is IPv4 only; such a source matches
nothing here, so the lab is stricter than EC2, never looser), untracked flows, connection limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["ingress", "egress"]

_PROTOCOL_NUMBERS = {"tcp": "6", "udp": "17", "icmp": "1"}
_NAMES = {number: name for name, number in _PROTOCOL_NUMBERS.items()}
ALL_PORTS = (0, 65535)


@dataclass(frozen=True)
class SgRule:
    """One allow rule of one direction, with its group sources already resolved to addresses."""

    protocol: str
    """``all``, ``tcp``, ``udp``, ``icmp`` or another IP protocol number."""
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...]

    def describe(self, direction: Direction) -> str:
        """``tcp 22 from 10.0.0.0/16`` (for the router's timeline)."""
        word = "from" if direction == "ingress" else "to"
        return f"{self.protocol}{self._ports_text()} {word} {','.join(self.cidrs) or 'nothing'}"

    def _ports_text(self) -> str:
        if self.protocol == "icmp":
            return "" if self.from_port in (None, -1) else f" type {self.from_port}"
        if self.protocol not in ("tcp", "udp") or (self.from_port, self.to_port) in ((None, None), ALL_PORTS):
            return ""
        return f" {self.from_port}" if self.from_port == self.to_port else f" {self.from_port}-{self.to_port}"

    def nft(self, direction: Direction, verdict: str = "accept") -> str | None:
        """The nftables rule that gives this rule's traffic ``verdict``; None when it can match nothing."""
        if not self.cidrs:
            return None
        field = "saddr" if direction == "ingress" else "daddr"
        parts = [f"ip {field} {{ {', '.join(self.cidrs)} }}"]
        if self.protocol in ("tcp", "udp"):
            ports = self._ports_text().strip()
            parts.append(f"{self.protocol} dport {ports}" if ports else f"meta l4proto {self.protocol}")
        elif self.protocol == "icmp":
            parts.append("meta l4proto icmp")
            if self.from_port not in (None, -1):
                parts.append(f"icmp type {self.from_port}")
                if self.to_port not in (None, -1):
                    parts.append(f"icmp code {self.to_port}")
        elif self.protocol != "all":
            parts.append(f"meta l4proto {self.protocol}")
        return " ".join([*parts, verdict])


def protocol_name(ip_protocol: str) -> str:
    """EC2's ``IpProtocol`` (``-1``, ``tcp``, ``6``, ``50``...) in the form ``SgRule`` uses."""
    value = str(ip_protocol).lower()
    if value in ("-1", "all"):
        return "all"
    return _NAMES.get(value, value)


def group_members(enis: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """``{group id: private IPv4 addresses of the ENIs that carry it}`` (for group sources)."""
    members: dict[str, set[str]] = {}
    for eni in enis:
        addresses = {a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses") or [] if a.get("PrivateIpAddress")}
        if eni.get("PrivateIpAddress"):
            addresses.add(eni["PrivateIpAddress"])
        for group in eni.get("Groups") or []:
            members.setdefault(group["GroupId"], set()).update(addresses)
    return members


def rules_of(group: Mapping[str, Any], direction: Direction, members: Mapping[str, set[str]]) -> list[SgRule]:
    """The allow rules of one group (a ``DescribeSecurityGroups`` item) in ``direction``."""
    permissions = group.get("IpPermissions" if direction == "ingress" else "IpPermissionsEgress") or []
    rules = []
    for permission in permissions:
        cidrs = {r["CidrIp"] for r in permission.get("IpRanges") or [] if r.get("CidrIp")}
        for pair in permission.get("UserIdGroupPairs") or []:
            cidrs.update(f"{ip}/32" for ip in members.get(pair.get("GroupId", ""), set()))
        rules.append(
            SgRule(
                protocol_name(permission.get("IpProtocol", "-1")),
                permission.get("FromPort"),
                permission.get("ToPort"),
                tuple(sorted(cidrs)),
            )
        )
    return rules


def eni_rules(
    eni: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, Any]],
    members: Mapping[str, set[str]],
    direction: Direction,
) -> list[SgRule] | None:
    """The union of the rules of the ENI's groups; None (not enforced) when a group is unknown or the
    ENI shows none (EC2 always gives an ENI at least one group)."""
    if not eni.get("Groups"):
        return None
    rules: list[SgRule] = []
    for ref in eni["Groups"]:
        group = groups.get(ref["GroupId"])
        if group is None:
            return None
        rules += rules_of(group, direction, members)
    return rules


__all__ = ["Direction", "SgRule", "eni_rules", "group_members", "protocol_name", "rules_of"]
