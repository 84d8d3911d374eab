"""The watcher's Spot handling (userdata/nat-boot.sh, `watch` mode): reading IMDS and handing over.

Each test sources the real script (NAT_BOOT_FUNCTIONS_ONLY=1), replaces `curl` (IMDS) or
`aws_query` (the EC2 API) by a function with a canned answer, and checks what the script's own
functions print or log. IMDS answers as on EC2: 404 on both paths while there is nothing to say,
``{"action": ..., "time": ...}`` at ``spot/instance-action`` from the two-minute notice on, and
``{"noticeTime": ...}`` at ``events/recommendations/rebalance`` (EC2 user guide, "Spot Instance
interruption notices", "EC2 instance rebalance recommendations").
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
TABLES = {zone: f"rtb-0{i}{'0' * 15}" for i, zone in enumerate(ZONES)}
PEERS = " ".join(f"{zone}:egress-{zone}:{TABLES[zone]}" for zone in ZONES)
NOT_FOUND = "<html><body><h1>404 - Not Found</h1>\n</body></html>"
ACTION_TIME = "2026-11-29T22:02:00Z"
ACTION = f'{{"action": "terminate", "time": "{ACTION_TIME}"}}'
REBALANCE = '{"noticeTime": "2026-11-29T21:58:00Z"}'


def imds_stub(action: tuple[int, str], rebalance: tuple[int, str]) -> str:
    """A `curl` answering both paths as the real one does with spot_notice's --write-out."""
    text = "".join(f"{body}\n{code}\x1e" for code, body in (action, rebalance))
    return f"curl() {{ printf '%s' {shlex.quote(text)}; }}"


def run_watch(zone: str, commands: str, *, aws_stub: str = "") -> str:
    """stdout of ``commands`` after sourcing the script as ``zone``'s NAT with takeover on."""
    script = f"source {shlex.quote(str(BOOT_SCRIPT_PATH))}\n{aws_stub}\nparse_peers\n{commands}\n"
    environment = functions_only_env(
        "http://127.0.0.1:9",
        "k",
        "s",
        NAT_ZONE=zone,
        NAT_TAKEOVER="peers",
        NAT_PEERS=PEERS,
        NAT_PROBE_TARGET="203.0.113.10:80",
        NAT_ROUTE_TABLE_IDS=TABLES[zone],
    )
    result = subprocess.run(
        ["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("action", "rebalance", "notice"),
    [
        ((404, NOT_FOUND), (404, NOT_FOUND), "none"),
        ((200, ACTION), (404, NOT_FOUND), "interruption terminate 2026-11-29T22:02:00Z"),
        ((200, ACTION), (200, REBALANCE), "interruption terminate 2026-11-29T22:02:00Z"),
        ((404, NOT_FOUND), (200, REBALANCE), "rebalance 2026-11-29T21:58:00Z"),
        ((401, ""), (401, ""), "expired"),
        ((0, ""), (0, ""), "none"),
    ],
    ids=["nothing", "notice", "notice-and-rebalance", "rebalance", "token-expired", "no-answer"],
)
def test_imds_spot_answers_are_read(action: tuple[int, str], rebalance: tuple[int, str], notice: str):
    assert run_watch("us-east-1a", f"{imds_stub(action, rebalance)}\nspot_notice").strip() == notice


def test_an_unreachable_imds_reads_as_no_notice():
    assert run_watch("us-east-1a", "curl() { return 7; }\nspot_notice").strip() == "none"


def route_answer(targets: dict[str, str]) -> str:
    items = "".join(
        f"<item><routeTableId>{table}</routeTableId><routeSet><item><destinationCidrBlock>0.0.0.0/0"
        f"</destinationCidrBlock><networkInterfaceId>{eni}</networkInterfaceId></item></routeSet></item>"
        for table, eni in targets.items()
    )
    return f"<R><routeTableSet>{items}</routeTableSet></R>"


def api_stub(targets: dict[str, str], calls: Path) -> str:
    """`aws_query`: DescribeRouteTables answers ``targets``; any other call is written to ``calls``
    (point_route runs the API in a subshell and keeps its output: a file is what comes back)."""
    answer = shlex.quote(route_answer(targets))
    return (
        "aws_query() {\n"
        f'  if [[ "$2" == DescribeRouteTables ]]; then printf "%s\\n" {answer}; return 0; fi\n'
        f'  echo "API $*" >>{shlex.quote(str(calls))}\n'
        "}"
    )


def handover(me: str, state: str, targets: dict[str, str]) -> tuple[str, list[str]]:
    """What hand_over logs and which ReplaceRoute calls it makes (one per line)."""
    with tempfile.TemporaryDirectory() as tmp:
        calls = Path(tmp) / "calls"
        calls.touch()
        script = f"eni_id=eni-me; {state}\nhand_over 'terminate {ACTION_TIME}' 2>&1; echo handed_over=$handed_over"
        out = run_watch(me, script, aws_stub=api_stub(targets, calls))
        made = sorted(line for line in calls.read_text().splitlines() if line.startswith("API ec2 ReplaceRoute"))
    return out, made


def test_a_notice_hands_the_zone_to_the_next_live_zone_before_ec2_takes_it():
    state = (
        "peer_owner[us-east-1b]=own; peer_eni[us-east-1b]=eni-b; peer_owner[us-east-1c]=own; peer_eni[us-east-1c]=eni-c"
    )
    targets = {TABLES["us-east-1a"]: "eni-me", TABLES["us-east-1b"]: "eni-b", TABLES["us-east-1c"]: "eni-c"}
    out, calls = handover("us-east-1a", state, targets)
    table = TABLES["us-east-1a"]
    route = "DestinationCidrBlock=0.0.0.0/0 NetworkInterfaceId=eni-b"
    assert calls == [f"API ec2 ReplaceRoute RouteTableId={table} {route}"]
    assert "handover zone=us-east-1a rule=spot-interruption to=eni-b (us-east-1b)" in out
    assert "handed_over=1" in out


def test_a_notice_also_hands_over_the_zones_this_nat_covers():
    # 1c is covered by this NAT (its table targets eni-me): it goes to 1b too, with 1a's own table.
    state = "peer_owner[us-east-1b]=own; peer_eni[us-east-1b]=eni-b; peer_owner[us-east-1c]=me"
    targets = {TABLES["us-east-1a"]: "eni-me", TABLES["us-east-1b"]: "eni-b", TABLES["us-east-1c"]: "eni-me"}
    _, calls = handover("us-east-1a", state, targets)
    assert [call.split()[3] for call in calls] == [
        f"RouteTableId={TABLES['us-east-1a']}",
        f"RouteTableId={TABLES['us-east-1c']}",
    ]
    assert all(call.endswith("NetworkInterfaceId=eni-b") for call in calls), calls


def test_a_failing_peer_is_passed_over_for_the_next():
    state = (
        "peer_owner[us-east-1b]=own; peer_eni[us-east-1b]=eni-b; misses[us-east-1b]=3; "
        "peer_owner[us-east-1c]=own; peer_eni[us-east-1c]=eni-c"
    )
    _, calls = handover("us-east-1a", state, {TABLES["us-east-1a"]: "eni-me"})
    assert len(calls) == 1 and calls[0].endswith("NetworkInterfaceId=eni-c"), calls


def test_without_a_live_peer_the_nat_says_it_cannot_hand_over():
    state = "peer_owner[us-east-1b]=us-east-1c; peer_owner[us-east-1c]=own; misses[us-east-1c]=5"
    out, calls = handover("us-east-1a", state, {TABLES["us-east-1a"]: "eni-me"})
    assert calls == []
    assert "handover zone=us-east-1a rule=spot-interruption impossible: no live peer" in out
    assert "handed_over=0" in out


def test_a_rebalance_recommendation_is_logged_once_and_moves_nothing():
    stub = imds_stub((404, NOT_FOUND), (200, REBALANCE))
    script = f"{stub}\nfor i in 1 2 3; do spot_checked_at=0; check_spot; done; echo handed_over=$handed_over"
    out = run_watch("us-east-1a", script, aws_stub='aws_query() { echo "API $*"; }')
    assert out.count("spot rebalance recommendation (2026-11-29T21:58:00Z)") == 1, out
    assert "API" not in out and "handed_over=0" in out


def test_the_notice_is_read_at_most_every_check_interval():
    # spot_notice reached twice in the same second would be a curl a round; it must be one per interval.
    stub = "spot_notice() { echo called >&2; echo none; }"
    out = run_watch("us-east-1a", f"{stub}\ncheck_spot 2>&1; check_spot 2>&1")
    assert out.count("called") == 1


def test_a_nat_that_handed_over_does_not_hand_over_again():
    # The notice stays in IMDS until EC2 takes the instance: later checks must not act (or log) again.
    stub = imds_stub((200, ACTION), (404, NOT_FOUND))
    fake = "hand_over() { echo HANDOVER; handed_over=1; }"
    script = f"{stub}\n{fake}\nfor i in 1 2 3; do spot_checked_at=0; check_spot; done"
    assert run_watch("us-east-1a", script).count("HANDOVER") == 1


def standby_handover(fdb: str) -> tuple[str, list[str]]:
    """hand_over of zone 1a's NAT with takeover = "standby": ``fdb`` is what its passive tunnel end learned."""
    enis = shlex.quote("<item><networkInterfaceId>eni-standby</networkInterfaceId></item>")
    routes = shlex.quote(route_answer({TABLES["us-east-1a"]: "eni-me"}))
    with tempfile.TemporaryDirectory() as tmp:
        calls = Path(tmp) / "calls"
        calls.touch()
        stubs = (
            f"bridge() {{ printf '%s' {shlex.quote(fdb)}; }}\nimds_get() {{ echo subnet-0a; }}\n"
            "aws_query() {\n"
            f'  echo "API $*" >>{shlex.quote(str(calls))}\n'
            '  case "$2" in\n'
            f"    DescribeNetworkInterfaces) printf '%s\\n' {enis} ;;\n"
            f"    DescribeRouteTables) printf '%s\\n' {routes} ;;\n"
            "  esac\n"
            "}"
        )
        script = (
            f"source {shlex.quote(str(BOOT_SCRIPT_PATH))}\n{stubs}\neni_id=eni-me\n"
            f"hand_over 'terminate {ACTION_TIME}' 2>&1; echo handed_over=$handed_over\n"
        )
        environment = functions_only_env(
            "http://127.0.0.1:9",
            "k",
            "s",
            NAT_ZONE="us-east-1a",
            NAT_TAKEOVER="standby",
            NAT_ROLE="active",
            NAT_EIP_ALLOCATION_ID="eipalloc-0a",
            NAT_ROUTE_TABLE_IDS=TABLES["us-east-1a"],
        )
        result = subprocess.run(
            ["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        made = [line for line in calls.read_text().splitlines() if "DescribeRouteTables" not in line]
    return result.stdout, made


def test_a_nat_with_a_standby_hands_its_address_and_routes_to_the_standby_its_tunnel_learned():
    out, calls = standby_handover("5a:00:00:00:00:01 dst 10.0.0.77 self\n")
    assert calls[0] == (
        "API ec2 DescribeNetworkInterfaces Filter.1.Name=addresses.private-ip-address Filter.1.Value.1=10.0.0.77 "
        "Filter.2.Name=subnet-id Filter.2.Value.1=subnet-0a"
    )
    # The address first (the standby has no other to spare), then the zone's table.
    assert calls[1].startswith("API ec2 AssociateAddress AllocationId=eipalloc-0a NetworkInterfaceId=eni-standby")
    assert calls[2] == (
        f"API ec2 ReplaceRoute RouteTableId={TABLES['us-east-1a']} DestinationCidrBlock=0.0.0.0/0 "
        "NetworkInterfaceId=eni-standby"
    )
    assert "handover zone=us-east-1a rule=spot-interruption to=eni-standby (standby)" in out
    assert "handed_over=1" in out


def test_a_nat_whose_tunnel_learned_no_standby_says_it_cannot_hand_over():
    out, calls = standby_handover("")
    assert calls == []
    assert "handover zone=us-east-1a rule=spot-interruption impossible: no live peer" in out
    assert "handed_over=0" in out
