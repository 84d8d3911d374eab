"""The data plane leaves nothing behind: no namespace, veth or process, after close or a failed start.

Also unit tests of the route translation (no namespaces needed).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from natlab.cloud import dataplane
from natlab.cloud.backend import MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import build_cloud, nat_instance
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.netns_names import PREFIX, RUN_ID, list_namespaces
from natlab.cloud.route_model import CloudView, SubnetPort, Target, desired_state, igw_nat

needs_netns = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")


def _leftovers(vpc: EmulatedVpc, pids: list[int]) -> list[str]:
    prefix = f"{PREFIX}{RUN_ID}-{vpc.tag}-"
    found = [f"namespace {n}" for n in list_namespaces(prefix)]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True, timeout=10).stdout.split()
    found += [f"host link {name}" for name in links if name.startswith("nl")]
    for pid in pids:
        try:
            os.kill(pid, 0)
            found.append(f"process {pid}")
        except ProcessLookupError:
            pass
    if vpc.sync is not None and vpc.sync._thread is not None and vpc.sync._thread.is_alive():
        found.append("route sync thread")
    return found


@needs_netns
@pytest.mark.dataplane
def test_close_leaves_no_namespace_veth_or_process(aws: MotoBackend) -> None:
    lab = build_cloud(aws.client("ec2"))
    lab.route_private_to(lab.nat_a, create=True)
    with EmulatedVpc(lab.ec2, lab.vpc_id) as vpc:
        assert vpc.internet.servers is not None
        pids = [vpc.internet.servers.pid]
        with nat_instance(vpc, lab, lab.nat_a):
            vpc.wait_for_event(r"0\.0\.0\.0/0 → eni-")
            assert vpc.whoami() == lab.public_ip[lab.nat_a]
        assert vpc.router.exists() and vpc.internet.ns.exists()
    assert _leftovers(vpc, pids) == []


@needs_netns
@pytest.mark.dataplane
@pytest.mark.parametrize("failing_step", ["build_subnets", "add_workload"])
def test_exception_mid_setup_leaves_nothing(
    aws: MotoBackend, monkeypatch: pytest.MonkeyPatch, failing_step: str
) -> None:
    lab = build_cloud(aws.client("ec2"))
    seen: list[tuple[object, ...]] = []
    original = getattr(dataplane, failing_step)

    def half_then_fail(*args: object) -> None:
        seen.append(args)
        original(*args)  # the step's own namespaces/links exist when it fails
        raise RuntimeError(f"injected failure after {failing_step}")

    monkeypatch.setattr(dataplane, failing_step, half_then_fail)  # the name start() calls
    vpc = EmulatedVpc(lab.ec2, lab.vpc_id)
    with pytest.raises(RuntimeError, match="injected failure"):
        vpc.open()
    assert seen, "the failing step ran"
    servers = vpc.internet.servers
    assert servers is not None, "the internet servers had started before the failure"
    assert _leftovers(vpc, [servers.pid]) == []


# --------------------------------------------------------------------------------------------------
# Route translation (pure functions)

PORTS = [SubnetPort("subnet-pub", "10.0.0.0/24", "nlbr0", 100), SubnetPort("subnet-priv", "10.0.1.0/24", "nlbr1", 101)]
IGW = Target("via", via="192.0.2.2", dev="nligw0")


def _view(*, check: bool = False, state: str = "running") -> CloudView:
    eni = {
        "NetworkInterfaceId": "eni-a",
        "SubnetId": "subnet-pub",
        "PrivateIpAddress": "10.0.0.57",
        "SourceDestCheck": check,
        "Attachment": {"InstanceId": "i-a", "DeviceIndex": 0},
        "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.57", "Association": {"PublicIp": "54.214.1.2"}}],
    }
    tables = [
        {
            "RouteTableId": "rtb-main",
            "Associations": [{"Main": True}],
            "Routes": [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local"}],
        },
        {
            "RouteTableId": "rtb-pub",
            "Associations": [{"SubnetId": "subnet-pub"}],
            "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"}],
        },
        {
            "RouteTableId": "rtb-priv",
            "Associations": [{"SubnetId": "subnet-priv"}],
            "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "NetworkInterfaceId": "eni-a"}],
        },
    ]
    return CloudView(tables, {"eni-a": eni}, {"i-a": state})


def test_route_to_a_ready_eni_goes_via_its_private_ip_on_its_subnet_bridge() -> None:
    routes, nat = desired_state(_view(), PORTS, {"10.0.0.57"}, IGW)
    assert routes[(101, "0.0.0.0/0")][1].via == "10.0.0.57"
    assert routes[(101, "0.0.0.0/0")][1].dev == "nlbr0"
    assert routes[(100, "0.0.0.0/0")][1].via == "192.0.2.2"
    assert nat == {"10.0.0.57": "54.214.1.2"}


@pytest.mark.parametrize(
    ("view", "attached", "why"),
    [
        (_view(check=True), {"10.0.0.57"}, "source/dest check is on"),
        (_view(state="terminated"), {"10.0.0.57"}, "terminated"),
        (_view(), set(), "not on the data plane"),
    ],
)
def test_route_to_an_unusable_eni_black_holes(view: CloudView, attached: set[str], why: str) -> None:
    target = desired_state(view, PORTS, attached, IGW)[0][(101, "0.0.0.0/0")][1]
    assert target.kind == "blackhole" and why in target.note


def test_subnet_without_association_follows_the_main_route_table() -> None:
    view = _view()
    view.route_tables[2]["Associations"] = []
    routes, _ = desired_state(view, PORTS, {"10.0.0.57"}, IGW)
    assert (101, "0.0.0.0/0") not in routes  # main table has only the local route


def test_elastic_ip_from_describe_addresses_wins_over_a_stale_eni_association() -> None:
    view = _view()
    view.addresses = [{"PublicIp": "127.1.2.3", "PrivateIpAddress": "10.0.0.57"}]
    stale = dict(
        view.enis["eni-a"],
        NetworkInterfaceId="eni-old",
        PrivateIpAddress="10.0.0.9",
        PrivateIpAddresses=[{"PrivateIpAddress": "10.0.0.9", "Association": {"PublicIp": "127.1.2.3"}}],
    )
    view.enis["eni-old"] = stale
    assert igw_nat(view) == {"10.0.0.57": "127.1.2.3"}
