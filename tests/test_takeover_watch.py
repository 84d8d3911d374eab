"""The takeover watcher's decisions (userdata/nat-boot.sh, `watch` mode), function by function.

Each test sources the real script (NAT_BOOT_FUNCTIONS_ONLY=1) in bash, replaces `aws_query` by a
function that prints a canned answer where the test needs the API, and checks what the watcher's
own functions print: tunnel addressing per zone pair, the successor rule, the parsers of EC2's XML
(fields in AWS's order and in moto's alphabetical one), the API verdict, and the config checks.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
PEERS = " ".join(f"{zone}:egress-{zone}:rtb-0{i}{'0' * 15}" for i, zone in enumerate(ZONES))


def watch_functions(zone: str, commands: str, *, aws_answer: str = "", aws_fails: bool = False, **env: str) -> str:
    """stdout of ``commands`` run after sourcing the script as zone ``zone``'s NAT with takeover on."""
    stub = f"aws_query() {{ printf '%s\\n' {shlex.quote(aws_answer)}; {'return 1' if aws_fails else 'return 0'}; }}"
    script = f"source {shlex.quote(str(BOOT_SCRIPT_PATH))}\n{stub}\nparse_peers\n{commands}\n"
    environment = (
        functions_only_env("http://127.0.0.1:9", "k", "s", NAT_ZONE=zone, NAT_TAKEOVER="peers", NAT_PEERS=PEERS)
        | {"NAT_PROBE_TARGET": "203.0.113.10:80", "NAT_ROUTE_TABLE_IDS": "rtb-0100000000000000"}
        | env
    )
    result = subprocess.run(
        ["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_both_ends_of_a_zone_pair_agree_on_the_tunnel():
    a_view = watch_functions("us-east-1a", "tunnel_of us-east-1c").split()
    c_view = watch_functions("us-east-1c", "tunnel_of us-east-1a").split()
    # mine, theirs, VNI, link, table
    assert a_view[:3] == ["100.127.0.4", "100.127.0.5", "4098"]
    assert c_view[:3] == [a_view[1], a_view[0], a_view[2]], "the /31 and VNI must mirror each other"
    assert a_view[3] == "natpeer2" and c_view[3] == "natpeer0"


def test_every_zone_pair_gets_its_own_vni_and_addresses():
    seen = set()
    for zone in ZONES:
        for peer in ZONES:
            if peer != zone:
                mine, _, vni, _, _ = watch_functions(zone, f"tunnel_of {peer}").split()
                seen.add((frozenset((zone, peer)), vni))
                assert mine.startswith("100.127.")
    vnis = {vni for _, vni in seen}
    assert len(seen) == 3 and len(vnis) == 3, f"one VNI per pair, distinct: {seen}"


@pytest.mark.parametrize(
    ("me", "state", "expected"),
    [
        # The dead zone's next zone in sorted order acts...
        ("us-east-1a", "peer_owner[us-east-1c]=own", "us-east-1c"),
        ("us-east-1c", "peer_owner[us-east-1a]=own", "us-east-1c"),
        # ...unless this watcher sees it failing too: then the one after it (here: itself).
        ("us-east-1a", "peer_owner[us-east-1c]=own; misses[us-east-1c]=3", "us-east-1a"),
        # A zone covered by another zone's NAT has no NAT of its own to act.
        ("us-east-1a", "peer_owner[us-east-1c]=us-east-1a", "us-east-1a"),
    ],
)
def test_the_successor_of_a_dead_zone_is_the_next_live_zone(me: str, state: str, expected: str):
    assert watch_functions(me, f"{state}; successor_of us-east-1b").strip() == expected


AWS_ORDER_ENIS = (
    "<DescribeNetworkInterfacesResponse><networkInterfaceSet><item>"
    "<networkInterfaceId>eni-0b</networkInterfaceId><subnetId>subnet-1</subnetId>"
    "<availabilityZone>us-east-1b</availabilityZone><privateIpAddress>10.0.1.4</privateIpAddress>"
    "<privateIpAddressesSet><item><privateIpAddress>10.0.1.4</privateIpAddress><primary>true</primary></item>"
    "</privateIpAddressesSet><attachment><attachmentId>eni-attach-1</attachmentId>"
    "<instanceId>i-0b</instanceId></attachment></item>"
    "<item><networkInterfaceId>eni-0p</networkInterfaceId><availabilityZone>us-east-1c</availabilityZone>"
    "<privateIpAddress>10.0.2.9</privateIpAddress><groupSet><item><groupId>sg-1</groupId></item></groupSet>"
    "</item></networkInterfaceSet></DescribeNetworkInterfacesResponse>"
)
MOTO_ORDER_ENIS = (
    "<R><networkInterfaceSet><item><attachment><instanceId>i-0b</instanceId></attachment>"
    "<availabilityZone>us-east-1b</availabilityZone><groupSet><item><groupId>sg-1</groupId></item></groupSet>"
    "<networkInterfaceId>eni-0b</networkInterfaceId><privateIpAddress>10.0.1.4</privateIpAddress>"
    "</item><item><availabilityZone>us-east-1c</availabilityZone><networkInterfaceId>eni-0p</networkInterfaceId>"
    "<privateIpAddress>10.0.2.9</privateIpAddress></item></networkInterfaceSet></R>"
)


@pytest.mark.parametrize("answer", [AWS_ORDER_ENIS, MOTO_ORDER_ENIS], ids=["aws-order", "moto-order"])
def test_enis_are_read_whatever_the_field_order(answer: str):
    lines = watch_functions("us-east-1a", "describe_enis eni-0b eni-0p", aws_answer=answer).splitlines()
    assert lines == ["eni-0b us-east-1b 10.0.1.4 i-0b", "eni-0p us-east-1c 10.0.2.9 -"]


MOTO_ORDER_TABLES = (
    "<R><routeTableSet><item><associationSet><item><routeTableId>rtb-1</routeTableId></item></associationSet>"
    "<routeSet><item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item>"
    "<item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><networkInterfaceId>eni-9</networkInterfaceId>"
    "</item></routeSet><routeTableId>rtb-1</routeTableId></item><item><routeTableId>rtb-2</routeTableId>"
    "<routeSet><item><networkInterfaceId>eni-8</networkInterfaceId><destinationCidrBlock>0.0.0.0/0"
    "</destinationCidrBlock></item></routeSet></item></routeTableSet></R>"
)


def test_route_targets_are_read_per_table():
    lines = watch_functions("us-east-1a", "route_targets rtb-1 rtb-2", aws_answer=MOTO_ORDER_TABLES).splitlines()
    assert lines == ["rtb-1 eni-9", "rtb-2 eni-8"]


def instance_status(state: str, instance: str = "ok", system: str = "ok") -> str:
    return (
        "<DescribeInstanceStatusResponse><instanceStatusSet><item><instanceId>i-0b</instanceId>"
        f"<instanceState><code>16</code><name>{state}</name></instanceState>"
        f"<instanceStatus><status>{instance}</status></instanceStatus>"
        f"<systemStatus><status>{system}</status></systemStatus></item></instanceStatusSet>"
        "</DescribeInstanceStatusResponse>"
    )


@pytest.mark.parametrize(
    ("answer", "fails", "verdict"),
    [
        (instance_status("running"), False, "healthy"),
        (instance_status("running", instance="initializing"), False, "healthy"),
        (instance_status("running", system="impaired"), False, "dead impaired"),
        (instance_status("stopped", "not-applicable", "not-applicable"), False, "dead stopped"),
        (instance_status("terminated", "not-applicable", "not-applicable"), False, "dead terminated"),
        ("<R><instanceStatusSet/></R>", False, "dead gone"),
        ("InvalidInstanceID.NotFound: The instance ID 'i-0b' does not exist", True, "dead gone"),
        ("RequestError: no answer from ec2", True, "unknown"),
    ],
    ids=["running", "initializing", "system-impaired", "stopped", "terminated", "empty", "not-found", "no-answer"],
)
def test_the_api_verdict_on_a_peer(answer: str, fails: bool, verdict: str):
    out = watch_functions(
        "us-east-1a", "peer_instance[us-east-1b]=i-0b; confirm_peer us-east-1b", aws_answer=answer, aws_fails=fails
    )
    assert out.strip() == verdict


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NAT_TAKEOVER": "hot-spare"}, "NAT_TAKEOVER='hot-spare' is malformed: it must be peers, standby or off"),
        ({"NAT_ROLE": "standby"}, "NAT_ROLE='standby' is malformed: it must be active (standby only with"),
        ({"NAT_PROBE_TARGET": "ec2.us-east-1.amazonaws.com"}, "NAT_PROBE_TARGET"),
        ({"NAT_PEERS": "us-east-1a:g:subnet-1"}, "NAT_PEERS='us-east-1a:g:subnet-1' is malformed"),
    ],
)
def test_bad_takeover_config_is_named(env: dict[str, str], named: str):
    out = watch_functions("us-east-1a", "check_takeover_config || echo rejected", **env)
    assert "rejected" in out and named in out, out


def test_good_takeover_config_passes():
    assert "rejected" not in watch_functions("us-east-1a", "check_takeover_config || echo rejected")


def test_a_probe_counts_when_it_connected_and_only_through_zones_on_their_own_nat():
    # curl reports each transfer's connect time; 0 means it never connected. Zone c is covered by a
    # (this watcher's zone): nothing to probe through there.
    stub_curl = "curl() { printf 'us-east-1b 0.001234\\nus-east-1c 0.000000\\n'; return 28; }"
    setup = (
        "peer_owner[us-east-1b]=own; tunnel_addr[us-east-1b]=100.127.0.2; "
        "peer_owner[us-east-1c]=us-east-1a; tunnel_addr[us-east-1c]=100.127.0.4"
    )
    assert watch_functions("us-east-1a", f"{stub_curl}\n{setup}\nprobe_round").splitlines() == ["us-east-1b ok"]
    setup = setup.replace("peer_owner[us-east-1c]=us-east-1a", "peer_owner[us-east-1c]=own")
    lines = watch_functions("us-east-1a", f"{stub_curl}\n{setup}\nprobe_round").splitlines()
    assert lines == ["us-east-1b ok", "us-east-1c miss"]
