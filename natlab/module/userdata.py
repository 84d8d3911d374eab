"""Renders the NAT instance user data with jinja2, byte for byte as Terraform's templatefile() does.

There is one template, userdata/user-data.sh.tftpl. It uses only `${name}` interpolations, which
jinja2 renders too once its variable delimiters are `${` and `}`. Directives (`%{ ... }`) are made
jinja2 block delimiters on purpose: a template that gains one fails here instead of rendering
differently from Terraform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2

USERDATA_DIR = Path(__file__).resolve().parents[2] / "userdata"
TEMPLATE_PATH = USERDATA_DIR / "user-data.sh.tftpl"
BOOT_SCRIPT_PATH = USERDATA_DIR / "nat-boot.sh"

TAKEOVER_MODES = ("peers", "standby", "off")
ROLES = ("active", "standby")

_ENVIRONMENT = jinja2.Environment(
    variable_start_string="${",
    variable_end_string="}",
    block_start_string="%{",
    block_end_string="}",
    comment_start_string="<jinja2-comment>",  # `{#` is ordinary bash (`${#array[@]}`)
    comment_end_string="</jinja2-comment>",
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)


def template_vars(
    *,
    zone: str,
    asg_name: str,
    route_table_ids: Sequence[str],
    served_cidrs: Sequence[str],
    route_destination: str = "0.0.0.0/0",
    eip_allocation_id: str | None = None,
    lifecycle_hook_name: str | None = None,
    notification_topic_arn: str | None = None,
    metrics_namespace: str | None = None,
    takeover: str = "off",
    peers: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    probe_target: str = "",
    role: str = "active",
) -> dict[str, str]:
    """The template's variables, shaped as the module's `local.user_data_vars` shapes them.

    ``peers``: every zone of the deployment (this one too) -> (its group name, its route table ids),
    for ``takeover="peers"``; with fewer than two zones takeover is off, as in the module.
    ``takeover="standby"``: ``role`` says which instance of the zone this is; the standby watches its
    zone's group alone (``peers`` holds the zone, its group being the zone's active one).
    """
    if takeover not in TAKEOVER_MODES:
        raise ValueError(f"takeover: must be one of {', '.join(TAKEOVER_MODES)}, got {takeover!r}")
    if role not in ROLES or (role == "standby" and takeover != "standby"):
        raise ValueError(f"role: must be one of {', '.join(ROLES)} (standby needs takeover='standby'), got {role!r}")
    standby = takeover == "standby"
    takeover_on = takeover == "peers" and len(peers or {}) > 1
    watcher = takeover_on or role == "standby"
    if watcher and not probe_target:
        raise ValueError("probe_target: host:port required when takeover is on")
    if role == "standby" and zone not in (peers or {}):
        raise ValueError(f"peers: the standby of {zone} needs its zone's entry (active group, route tables)")
    if not route_table_ids:
        raise ValueError("route_table_ids: at least one private route table is required")
    if not served_cidrs:
        raise ValueError("served_cidrs: at least one CIDR is required")
    return {
        "zone": zone,
        "asg_name": asg_name,
        "route_table_ids": " ".join(route_table_ids),
        "route_destination": route_destination,
        "served_cidrs": " ".join(served_cidrs),
        "eip_allocation_id": eip_allocation_id or "",
        "lifecycle_hook_name": lifecycle_hook_name or "",
        "notification_topic_arn": notification_topic_arn or "",
        "metrics_namespace": metrics_namespace or "",
        "takeover": "standby" if standby else "peers" if takeover_on else "off",
        "role": role,
        "peers": peers_config({zone: (peers or {})[zone]} if standby else peers or {}) if watcher else "",
        "probe_target": probe_target if watcher else "",
        "boot_script": BOOT_SCRIPT_PATH.read_text(),
    }


def peers_config(peers: Mapping[str, tuple[str, Sequence[str]]]) -> str:
    """``zone:group:rtb,rtb`` per zone, sorted by zone, as the module's ``local.takeover_peers``."""
    return " ".join(f"{zone}:{peers[zone][0]}:{','.join(peers[zone][1])}" for zone in sorted(peers))


def render(**config: object) -> str:
    """The user data for one zone; keywords as for template_vars()."""
    template = _ENVIRONMENT.from_string(TEMPLATE_PATH.read_text())
    return template.render(template_vars(**config))  # type: ignore[arg-type]


def functions_only_env(endpoint_url: str, key_id: str, secret: str, **overrides: str) -> dict[str, str]:
    """An environment to source the boot script for its functions alone (tests, benches).

    ``NAT_BOOT_FUNCTIONS_ONLY=1`` stops the script before ``main``; the configuration is a valid one
    (a zone, a group, one route table), the API goes to ``endpoint_url`` with the given credentials.
    ``overrides`` replace any of it (e.g. ``NAT_ROUTE_TABLE_IDS``).
    """
    return {
        "PATH": os.environ["PATH"],
        "NAT_BOOT_FUNCTIONS_ONLY": "1",
        "NAT_ZONE": "a",
        "NAT_ASG_NAME": "g",
        "NAT_ROUTE_TABLE_IDS": "rtb-1",
        "NAT_ROUTE_DESTINATION": "0.0.0.0/0",
        "NAT_SERVED_CIDRS": "10.0.0.0/16",
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
    } | overrides
