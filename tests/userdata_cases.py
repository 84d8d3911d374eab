"""Configurations the user data is rendered for: 1 and 3 zones, with and without EIP, topic and hook; standbys."""

from __future__ import annotations

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
PROBE_TARGET = "ec2.us-east-1.amazonaws.com:443"


def _zone_config(zone: str, index: int, *, eip: bool, topic: bool, hook: bool, tables: int) -> dict:
    return {
        "zone": zone,
        "asg_name": f"egress-{zone}",
        "route_table_ids": [f"rtb-0{index}{n:015x}" for n in range(tables)],
        "served_cidrs": ["10.0.0.0/16", "100.64.0.0/16"] if index == 2 else ["10.0.0.0/16"],
        "route_destination": "0.0.0.0/0",
        "eip_allocation_id": f"eipalloc-0{index}{'a' * 15}" if eip else None,
        "lifecycle_hook_name": "egress-launch" if hook else None,
        "notification_topic_arn": "arn:aws:sns:us-east-1:123456789012:nat-events" if topic else None,
        "metrics_namespace": "Egress/NAT" if topic else None,
    }


def cases() -> dict[str, list[dict]]:
    """Case name -> one render config per zone."""
    out: dict[str, list[dict]] = {}
    for zones in (1, 3):
        for eip in (False, True):
            for features in (False, True):
                name = f"{zones}z-{'eip' if eip else 'noeip'}-{'topic+hook' if features else 'bare'}"
                configs = [
                    _zone_config(zone, i, eip=eip, topic=features, hook=features, tables=1 + i)
                    for i, zone in enumerate(ZONES[:zones])
                ]
                # Takeover on with the feature set (off with 1 zone, whatever the mode), off without.
                peers = {c["zone"]: (c["asg_name"], c["route_table_ids"]) for c in configs}
                for config in configs:
                    config.update(takeover="peers" if features else "off", peers=peers, probe_target=PROBE_TARGET)
                out[name] = configs
    # A standby per zone (takeover "standby"): each zone's NAT (role active) and its standby.
    actives = [_zone_config(zone, i, eip=True, topic=True, hook=True, tables=1 + i) for i, zone in enumerate(ZONES)]
    peers = {c["zone"]: (c["asg_name"], c["route_table_ids"]) for c in actives}
    standbys = [{**c, "asg_name": f"{c['asg_name']}-standby", "role": "standby"} for c in actives]
    for config in actives + standbys:
        config.update(takeover="standby", peers=peers, probe_target=PROBE_TARGET)
    out["3z-eip-standby"] = actives + standbys
    return out


def group_key(config: dict) -> str:
    """The module's key of a config's group: the zone, or ``<zone>-standby`` for a standby."""
    return f"{config['zone']}-standby" if config.get("role") == "standby" else config["zone"]
