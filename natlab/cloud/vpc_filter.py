"""What the VPC lets through besides routes: security groups, the source/dest check's source half,
link-local addresses. One nftables table in the router namespace, kept equal to the emulator's view.

``VpcFilter.follow(enis)`` is called by ``RouteSync`` every round with the ENIs it has read (no
extra call for them); the groups' rules are read (``DescribeSecurityGroups``, one call, ~5 ms warm
against moto) at most every ``groups_interval`` s, or at once when an ENI shows a group not seen yet.
The table is rebuilt in one atomic ``nft -f`` only when its text changes.

The table's ``forward`` chain, in order (``priority filter + 10``: after the IGW's own checks):

1. ``169.254.0.0/16`` is never forwarded: on EC2 each instance's metadata service and link-local
   addresses stay on the instance. (In the lab each instance's IMDS emulator has 169.254.169.254
   on its own ``lo``: without this rule, a workload routed through a NAT would get the NAT's IMDS.)
2. Source/dest check, source half: from an ENI whose check is on (matched by its MAC), a packet
   whose source is not one of the ENI's own private addresses is dropped ("the instance must be
   the source or destination of any traffic it sends or receives", VPC user guide, NAT instances:
   https://docs.aws.amazon.com/vpc/latest/userguide/VPC_NAT_Instance.html). The destination half is
   in ``route_model.py``: routes to such an ENI black-hole.
3. Security groups are stateful: a packet in the reply direction of a connection the router let
   through (``ct direction reply``), or an ICMP error about one (``ct state related``), passes.
4. Egress: a packet from an ENI (by MAC) must match one of its groups' egress rules.
5. Ingress: a packet delivered to an ENI (the route's next hop, ``rt ip nexthop``: the ENI's own
   address, or a NAT's when it is routed through one) must match one of its groups' ingress rules.

What it cannot see: traffic between two hosts of one subnet crosses the subnet's bridge without
being routed, so it is neither filtered nor checked here (the lab's instances and workloads sit in
different subnets, so every flow the scenarios test is routed). Network ACLs and IPv6 are not
emulated. Hosts that are no ENI (the workload namespaces, the internet) have no groups.

Conntrack is the router's (one table for all ENIs, where EC2 tracks per ENI), and only the reply
direction passes on tracked state: every packet in a connection's original direction is judged by
the rules. So a flow moved to another NAT instance is judged by the new NAT's group, as on EC2; but
removing a rule cuts a flow it allowed at once, where EC2 lets a tracked flow go on.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from . import tools
from .netns import Namespace
from .netns_sysctl import set_sysctl
from .security_groups import Direction, SgRule, eni_rules, group_members

log = logging.getLogger(__name__)

FILTER_TABLE = "natlab_vpc"
LINK_LOCAL = "169.254.0.0/16"
APPLY_TIMEOUT = 10.0
GROUPS_INTERVAL = 1.0
SRC_CHECK_COMMENT = "source/dest check: foreign source"
LINK_LOCAL_COMMENT = "link-local: never routed"


def _chain_name(direction: Direction, eni_id: str) -> str:
    return f"{'in' if direction == 'ingress' else 'out'}_{eni_id.replace('-', '_')}"


def _drop_comment(direction: Direction, eni_id: str) -> str:
    return f"{eni_id}: no {direction} rule matched"


def eni_addresses(eni: Mapping[str, Any]) -> list[str]:
    """The ENI's private IPv4 addresses (primary first)."""
    found = [eni["PrivateIpAddress"]] if eni.get("PrivateIpAddress") else []
    for addr in eni.get("PrivateIpAddresses") or []:
        if addr.get("PrivateIpAddress") and addr["PrivateIpAddress"] not in found:
            found.append(addr["PrivateIpAddress"])
    return found


def _elements(items: list[str]) -> str:
    return f" elements = {{ {', '.join(items)} }};" if items else ""


def filter_ruleset(enis: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Mapping[str, Any]]) -> str:
    """The whole ``natlab_vpc`` table for these ENIs and groups (see the module docstring)."""
    members = group_members(enis.values())
    checked, own, egress_map, chains = [], [], [], []
    ingress_by_ip: dict[str, str] = {}
    # In-use ENIs first: moto can show a terminated instance's ENI beside a new one that got the same
    # address (EC2 never does); the map takes one entry per address, else nft refuses the whole table.
    for eni_id, eni in sorted(enis.items(), key=lambda item: (item[1].get("Status") != "in-use", item[0])):
        mac, addresses = eni.get("MacAddress"), eni_addresses(eni)
        if not mac or not addresses:
            continue
        own += [f"{mac} . {ip}" for ip in addresses]
        if eni.get("SourceDestCheck", True):
            checked.append(mac)
        for direction in ("ingress", "egress"):
            rules = eni_rules(eni, groups, members, direction)
            if rules is None:
                continue  # not enforced: see eni_rules
            chain = _chain_name(direction, eni_id)
            body = [line for rule in rules if (line := rule.nft(direction, "return"))]
            body.append(f'counter drop comment "{_drop_comment(direction, eni_id)}"')
            chains.append(f"    chain {chain} {{\n" + "".join(f"        {line}\n" for line in body) + "    }\n")
            if direction == "ingress":
                for ip in addresses:
                    ingress_by_ip.setdefault(ip, chain)
            else:
                egress_map.append(f"{mac} : jump {chain}")
    ingress_map = [f"{ip} : jump {chain}" for ip, chain in sorted(ingress_by_ip.items())]
    return (
        f"table ip {FILTER_TABLE} {{\n"
        f"    set srcdst_checked {{ type ether_addr;{_elements(checked)} }}\n"
        f"    set eni_own {{ type ether_addr . ipv4_addr;{_elements(own)} }}\n"
        f"    map sg_ingress {{ type ipv4_addr : verdict;{_elements(ingress_map)} }}\n"
        f"    map sg_egress {{ type ether_addr : verdict;{_elements(egress_map)} }}\n"
        + "".join(chains)
        + "    chain forward {\n"
        "        type filter hook forward priority filter + 10; policy accept;\n"
        f'        ip daddr {LINK_LOCAL} counter drop comment "{LINK_LOCAL_COMMENT}"\n'
        "        ether saddr @srcdst_checked ether saddr . ip saddr != @eni_own"
        f' counter drop comment "{SRC_CHECK_COMMENT}"\n'
        "        ct state related accept\n"
        "        ct direction reply accept\n"
        "        ether saddr vmap @sg_egress\n"
        "        rt ip nexthop vmap @sg_ingress\n"
        "    }\n"
        "}\n"
    )


def eni_summary(
    eni: Mapping[str, Any], groups: Mapping[str, Mapping[str, Any]], members: Mapping[str, set[str]]
) -> str:
    """One line per ENI for the router's timeline: its check and its rules."""
    parts = [f"source/dest check {'on' if eni.get('SourceDestCheck', True) else 'off'}"]
    for direction in ("ingress", "egress"):
        rules: list[SgRule] | None = eni_rules(eni, groups, members, direction)
        shown = "not enforced" if rules is None else "; ".join(r.describe(direction) for r in rules) or "none"
        parts.append(f"{direction} {shown}")
    return f"filter {eni.get('NetworkInterfaceId')} ({eni.get('PrivateIpAddress')}): {', '.join(parts)}"


class VpcFilter:
    """Keeps the router's ``natlab_vpc`` table equal to the ENIs' groups and checks (module docstring).

    Not thread-safe by itself: ``RouteSync`` calls ``follow`` under its round lock.
    """

    def __init__(self, ec2: Any, vpc_id: str, router: Namespace, *, groups_interval: float = GROUPS_INTERVAL) -> None:
        self.ec2 = ec2
        self.vpc_id = vpc_id
        self.router = router
        self.groups_interval = groups_interval
        self.groups: dict[str, dict[str, Any]] = {}
        self.groups_fetched = 0
        self._groups_at = float("-inf")
        self._applied = ""
        self._summaries: dict[str, str] = {}

    def install(self) -> None:
        """The table with no ENI yet (link-local drop from the start); conntrack liberal on TCP
        windows, so that only the rules, never a window check, drop a packet."""
        try:
            set_sysctl(self.router, "net.netfilter.nf_conntrack_tcp_be_liberal", 1)
        except OSError as error:  # a kernel without it: window checks may drop a stray packet
            log.warning("conntrack TCP window checks stay on in %s: %s", self.router.name, error)
        self._apply(filter_ruleset({}, {}))

    def follow(self, enis: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Bring the table in line with ``enis`` (ENI id -> DescribeNetworkInterfaces item); returns
        one line per ENI whose filtering changed."""
        wanted = {g["GroupId"] for eni in enis.values() for g in eni.get("Groups") or []}
        if time.monotonic() - self._groups_at > self.groups_interval or not wanted <= set(self.groups):
            self._fetch_groups()
        text = filter_ruleset(enis, self.groups)
        if text == self._applied:
            return []
        self._apply(text)
        members = group_members(enis.values())
        summaries = {eni_id: eni_summary(eni, self.groups, members) for eni_id, eni in enis.items()}
        changed = [line for eni_id, line in sorted(summaries.items()) if self._summaries.get(eni_id) != line]
        changed += [f"filter {eni_id}: gone" for eni_id in sorted(set(self._summaries) - set(summaries))]
        self._summaries = summaries
        return changed

    def drops(self) -> dict[str, int]:
        """Packets dropped so far, by rule comment (``eni-…: no ingress rule matched``, …)."""
        proc = self.router.run(["nft", "-j", "list", "table", "ip", FILTER_TABLE], timeout=APPLY_TIMEOUT, check=True)
        counts: dict[str, int] = {}
        for item in json.loads(proc.stdout)["nftables"]:
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
            counts[rule["comment"]] = counts.get(rule["comment"], 0) + packets
        return counts

    def _fetch_groups(self) -> None:
        found = self.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [self.vpc_id]}])
        self.groups = {g["GroupId"]: g for g in found["SecurityGroups"]}
        self._groups_at = time.monotonic()
        self.groups_fetched += 1

    def _apply(self, text: str) -> None:
        script = f"table ip {FILTER_TABLE}\ndelete table ip {FILTER_TABLE}\n{text}"
        proc = subprocess.run(
            [*self.router.exec_prefix(), tools.tool("nft"), "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=APPLY_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nft in {self.router.name} failed: {proc.stderr.strip()}\n{script}")
        self._applied = text
        log.debug("VPC filter applied:\n%s", text)


__all__ = ["FILTER_TABLE", "VpcFilter", "eni_addresses", "filter_ruleset"]
