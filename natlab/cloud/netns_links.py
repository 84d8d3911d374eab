"""The links the data plane wires namespaces together with (veth pairs, bridges), so each topology
step is one call that gets the names, MACs and ``up`` right.
"""

from __future__ import annotations

from .netns import Namespace


def veth_pair(
    ns_a: Namespace,
    name_a: str,
    ns_b: Namespace,
    name_b: str,
    mac_a: str | None = None,
    mac_b: str | None = None,
    *,
    up: bool = True,
) -> None:
    """Create veth ``name_a`` in ``ns_a`` with its peer ``name_b`` in ``ns_b`` (both up by default).

    Interface names are at most 15 characters. Deleting either namespace destroys both ends.
    """
    argv = ["link", "add", name_a]
    if mac_a:
        argv += ["address", mac_a]
    argv += ["type", "veth", "peer", "name", name_b, "netns", ns_b.name]
    if mac_b:
        argv += ["address", mac_b]
    ns_a.ip(*argv)
    if up:
        ns_a.link_up(name_a)
        ns_b.link_up(name_b)


def bridge(ns: Namespace, name: str, mac: str, *, up: bool = True) -> None:
    """Create a bridge with a FIXED MAC (else it takes its lowest port MAC and neighbours break)."""
    ns.ip("link", "add", name, "address", mac, "type", "bridge")
    if up:
        ns.link_up(name)


def set_master(ns: Namespace, ifname: str, bridge_name: str) -> None:
    """Attach ``ifname`` to bridge ``bridge_name`` inside ``ns``."""
    ns.ip("link", "set", ifname, "master", bridge_name)


__all__ = ["bridge", "set_master", "veth_pair"]
