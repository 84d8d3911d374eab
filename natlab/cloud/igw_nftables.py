"""The IGW's 1:1 NAT in the router's nftables: the table and the text that refills its maps."""

from __future__ import annotations

from collections.abc import Mapping

NFT_TABLE = "natlab"


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


def nft_map_update(nat: Mapping[str, str]) -> str:
    """The ``nft -f`` text that sets the IGW maps to ``nat`` (``{private IP: public IP}``), replacing what they held."""
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
