"""The standby's watcher and the active's tunnel end (userdata/nat-boot.sh, takeover "standby").

Like tests/test_takeover_watch.py: each test sources the real script (NAT_BOOT_FUNCTIONS_ONLY=1) in
bash with `aws_query` (or a step above it) replaced, and checks what the script's own functions do
for a standby: it watches its own zone's NAT alone, always acts itself, shares one fixed tunnel pair
with the active NAT, and takes the zone's Elastic IP before its routes.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env

ZONE = "us-east-1a"
PEERS = f"{ZONE}:egress-{ZONE}:rtb-0100000000000000,rtb-0200000000000000"


def standby_functions(commands: str, *, role: str = "standby", **env: str) -> subprocess.CompletedProcess[str]:
    """``commands`` run after sourcing the script as the standby (or ``role``) of ``ZONE``."""
    script = f"source {shlex.quote(str(BOOT_SCRIPT_PATH))}\n{commands}\n"
    environment = (
        functions_only_env(
            "http://127.0.0.1:9",
            "k",
            "s",
            NAT_ZONE=ZONE,
            NAT_ASG_NAME=f"egress-{ZONE}-standby",
            NAT_TAKEOVER="standby",
            NAT_ROLE=role,
            NAT_PEERS=PEERS,
            NAT_PROBE_TARGET="203.0.113.10:80",
            NAT_ROUTE_TABLE_IDS="rtb-0100000000000000 rtb-0200000000000000",
        )
        | env
    )
    return subprocess.run(["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=30)


def stdout_of(commands: str, **kwargs: str) -> str:
    result = standby_functions(commands, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_standby_watches_its_own_zone_and_is_always_its_successor():
    out = stdout_of('parse_peers; echo "${peers_sorted[*]}"; successor_of us-east-1a')
    assert out.splitlines() == [ZONE, ZONE]


def test_the_zones_nat_does_not_watch_with_a_standby_but_the_standby_does():
    assert stdout_of("watches && echo yes || echo no", role="active").strip() == "no"
    assert stdout_of("watches && echo yes || echo no").strip() == "yes"
    assert stdout_of("watches && echo yes || echo no", role="active", NAT_TAKEOVER="peers").strip() == "yes"


def test_both_ends_of_the_standby_tunnel_mirror_each_other():
    standby = stdout_of("parse_peers; tunnel_of us-east-1a").split()
    active = stdout_of("tunnel_of us-east-1a", role="active").split()
    # mine, theirs, VNI, link, table: the active's end (open_standby_tunnel) reads them the other way round.
    assert standby[:2] == ["100.127.255.0", "100.127.255.1"]
    assert active == standby, "one fixed pair per zone: both ends compute the same line"
    assert standby[2] == "4095" and standby[3] == "natstandby"


def test_a_standby_config_needs_its_zones_entry_and_a_probe_target():
    result = standby_functions("check_takeover_config || echo rejected", NAT_PEERS="", NAT_PROBE_TARGET="x")
    assert "rejected" in result.stdout
    assert "NAT_PROBE_TARGET='x' is malformed" in result.stdout and "NAT_PEERS='' is malformed" in result.stdout
    assert "rejected" not in stdout_of("check_takeover_config || echo rejected")
    # The zone's NAT with a standby needs neither: it only answers the standby's probes.
    assert "rejected" not in stdout_of(
        "check_takeover_config || echo rejected", role="active", NAT_PEERS="", NAT_PROBE_TARGET=""
    )


def test_the_standby_takes_the_elastic_ip_then_the_routes_then_marks_the_nat(tmp_path: Path):
    # The API is a file of the actions called; the zone's tables both still target the dead NAT's ENI.
    stubs = (
        'aws_query() { echo "$2" >>"${CALLS}"; }\n'
        'route_targets() { printf "%s eni-dead\\n" "$@"; }\n'
        "metrics_route_event() { :; }\n"
        "record_covering() { :; }\n"  # it writes /run/nat-instance: the host's, outside a sandbox
    )
    setup = "parse_peers; eni_id=eni-standby; peer_eni[us-east-1a]=eni-dead; peer_instance[us-east-1a]=i-dead"
    result = standby_functions(
        f"{stubs}{setup}\ntake_over us-east-1a peer-not-forwarding healthy\necho owner=${{peer_owner[us-east-1a]}}",
        NAT_EIP_ALLOCATION_ID="eipalloc-0123456789abcdef0",
        CALLS=str(tmp_path / "calls"),
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().split()
    assert calls == ["AssociateAddress", "ReplaceRoute", "ReplaceRoute", "SetInstanceHealth"], calls
    assert "owner=me" in result.stdout
    assert "takeover zone=us-east-1a rule=peer-not-forwarding" in result.stdout


def test_a_peer_covering_another_zone_keeps_its_own_address(tmp_path: Path):
    # With peers, a survivor covers another zone with its own address: no Elastic IP call.
    stubs = (
        'aws_query() { echo "$2" >>"${CALLS}"; }\nroute_targets() { printf "%s eni-dead\\n" "$@"; }\n'
        "record_covering() { :; }\n"
    )
    peers = f"{PEERS} us-east-1b:egress-us-east-1b:rtb-0300000000000000"
    setup = "parse_peers; eni_id=eni-a; peer_eni[us-east-1b]=eni-dead; peer_instance[us-east-1b]=i-dead"
    result = standby_functions(
        f"{stubs}{setup}\ntake_over us-east-1b peer-dead 'dead stopped'",
        role="active",
        NAT_TAKEOVER="peers",
        NAT_PEERS=peers,
        NAT_EIP_ALLOCATION_ID="eipalloc-0123456789abcdef0",
        CALLS=str(tmp_path / "calls"),
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().split()
    assert "AssociateAddress" not in calls and calls[0] == "ReplaceRoute", calls


def test_a_zones_first_nat_is_not_held_down_but_one_given_back_is():
    # "none" is the never-attached placeholder the routes start at: a first NAT took nothing back, so
    # peer-not-forwarding must stay armed for it (a standby that starts before its NAT saw exactly this).
    setup = "parse_peers; record_covering() { :; }"
    first = stdout_of(
        f"{setup}; note_owner {ZONE} none eni-p; note_owner {ZONE} own eni-1; echo held=${{holddown_until[{ZONE}]:-0}}"
    )
    assert "held=0" in first and "hold-down" not in first
    back = stdout_of(
        f"{setup}; note_owner {ZONE} me eni-s; note_owner {ZONE} own eni-2; echo held=${{holddown_until[{ZONE}]:-0}}"
    )
    assert "held=0" not in back and f"give-back zone={ZONE}" in back and f"hold-down zone={ZONE}" in back


def test_a_refused_elastic_ip_move_is_logged_and_the_routes_still_move(tmp_path: Path):
    stubs = (
        'aws_query() { echo "$2" >>"${CALLS}"; [[ "$2" != AssociateAddress ]]; }\n'
        'route_targets() { printf "%s eni-dead\\n" "$@"; }\n'
        "record_covering() { :; }\n"
    )
    setup = "parse_peers; eni_id=eni-standby; peer_eni[us-east-1a]=eni-dead; peer_instance[us-east-1a]=i-dead"
    result = standby_functions(
        f"{stubs}{setup}\ntake_over us-east-1a peer-dead 'dead stopped'",
        NAT_EIP_ALLOCATION_ID="eipalloc-0123456789abcdef0",
        CALLS=str(tmp_path / "calls"),
    )
    assert result.returncode == 0, result.stderr
    assert "could not move elastic ip eipalloc-0123456789abcdef0 here" in result.stdout
    assert "-> eni-standby" not in result.stdout.split("could not move")[0]
    assert (tmp_path / "calls").read_text().split().count("ReplaceRoute") == 2
