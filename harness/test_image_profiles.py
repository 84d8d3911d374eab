"""Image profiles: an instance has only its image's packages, and the boot script's dnf install is hardened.

The standard AL2023 image (``al2023``, the lab's default) has no nftables: inside the instance the
host's ``nft`` is really gone, and the real boot script installs it with dnf, whose time and faults
the lab models (``natlab/cloud/image.py``, the ``dnf`` shim). ``baked`` has nftables already.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import VPC_CIDR, CloudLab
from natlab.cloud.fleet import identity_from_backend
from natlab.cloud.image import DnfModel, Image
from natlab.cloud.imds import InstanceIdentity
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.sandbox import InstanceSandbox
from natlab.module.userdata import render

needs_netns = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")

INSTALL = "dnf install -y --setopt=install_weak_deps=False nftables"
BOOT_TIMEOUT = 60.0


def _identity(lab: CloudLab, instance_id: str) -> InstanceIdentity:
    instance = lab.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return identity_from_backend(lab.ec2, instance, lab.ec2.meta.region_name)


def _port(aws: Any) -> int:
    assert aws.port is not None
    return aws.port


def _probe(aws: Any, lab: CloudLab, image: Image, script: str, workdir: Path) -> dict[str, str]:
    """Runs ``script`` in an instance of ``image``; each ``key=value`` line it prints, as a dict.

    The instance's files stay in ``workdir``: a second probe there is the same instance started again.
    """
    user_data = f"#!/usr/bin/env bash\nset -o nounset\n{script}".encode()
    identity = _identity(lab, lab.nat_b)
    with InstanceSandbox(identity, user_data, _port(aws), image=image, workdir=workdir, keep=True) as box:
        assert box.wait(timeout=30) == 0, box.describe()
        console = box.console_log()
    return dict(line.split("=", 1) for line in console.splitlines() if "=" in line)


WHAT_IS_THERE = """\
for tool in nft iptables conntrack ip curl aws awk; do echo "which-$tool=$(command -v "$tool" || echo none)"; done
/usr/sbin/nft --version >/dev/null 2>&1; echo "nft-by-path=$?"
/sbin/iptables --version >/dev/null 2>&1; echo "iptables-by-path=$?"
rpm -q nftables >/dev/null; echo "rpm-nftables=$?"
"""


@needs_netns
@pytest.mark.parametrize(("profile", "has_nft"), [("al2023", False), ("baked", True)])
def test_the_image_decides_which_packages_an_instance_has(
    aws: Any, lab: CloudLab, tmp_path: Path, profile: str, has_nft: bool
) -> None:
    seen = _probe(aws, lab, Image(profile), WHAT_IS_THERE, tmp_path)
    assert (seen["which-nft"] != "none") is has_nft, seen
    assert seen["nft-by-path"] == ("0" if has_nft else "127"), "an absolute path must not find the host's nft"
    assert seen["rpm-nftables"] == ("0" if has_nft else "1")
    assert seen["which-iptables"] == seen["which-conntrack"] == "none", "neither image has iptables or conntrack"
    assert seen["iptables-by-path"] == "127"
    assert all(seen[f"which-{tool}"] != "none" for tool in ("ip", "curl", "aws", "awk")), seen
    assert Path("/usr/sbin/nft").exists(), "the host keeps its nft"


@needs_netns
def test_what_dnf_installs_stays_on_the_instance_disk_across_a_stop_and_start(
    aws: Any, lab: CloudLab, tmp_path: Path
) -> None:
    install = """\
dnf install -y nftables; echo "install=$?"
echo "which-nft=$(command -v nft || echo none)"
nft --version >/dev/null; echo "nft-runs=$?"
dnf install -y no-such-package; echo "unknown=$?"
command -v iptables >/dev/null; echo "iptables=$?"
"""
    seen = _probe(aws, lab, Image("al2023"), install, tmp_path)
    assert (seen["install"], seen["nft-runs"], seen["unknown"], seen["iptables"]) == ("0", "0", "1", "1"), seen
    assert seen["which-nft"] == "/usr/sbin/nft"
    box_dir = tmp_path / lab.nat_b
    assert (box_dir / "image" / "rpmdb").read_text().split()[-1] == "nftables", "only what was asked is installed"
    assert (box_dir / "upper" / "usr" / "sbin" / "nft").is_file(), "the install landed in the instance's overlay"
    # started again: user data does not run again, the disk is the same
    again = _probe(aws, lab, Image("al2023"), WHAT_IS_THERE, tmp_path)
    assert (again["nft-by-path"], again["rpm-nftables"], again["iptables-by-path"]) == ("0", "0", "127"), again


# --- the real boot script ---------------------------------------------------------------------------


@pytest.fixture
def vpc(lab: CloudLab) -> Iterator[EmulatedVpc]:
    """The lab's VPC with its data plane, its private route on NAT A (which never boots here)."""
    lab.route_private_to(lab.nat_a, create=True)
    with EmulatedVpc(lab.ec2, lab.vpc_id) as emulated:
        yield emulated


def nat_b_sandbox(
    lab: CloudLab,
    port: int,
    workdir: Path,
    *,
    image: Image,
    edit: Callable[[str], str] = lambda user_data: user_data,
    **sandbox: Any,
) -> InstanceSandbox:
    """NAT B, not started yet, with the real user data rendered for the lab's private route table
    (``edit`` may change it first), its API at ``port``; ``sandbox`` goes to ``InstanceSandbox``."""
    identity = _identity(lab, lab.nat_b)
    user_data = render(
        zone=identity.az, asg_name="natlab-nat-b", route_table_ids=[lab.private_rtb], served_cidrs=[VPC_CIDR]
    )
    return InstanceSandbox(identity, edit(user_data).encode(), port, image=image, workdir=workdir, keep=True, **sandbox)


def _boot_nat_b(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, image: Image, workdir: Path
) -> tuple[InstanceSandbox, str | None]:
    """NAT B boots the real rendered user data on ``image``: its (closed) sandbox, and the address a
    private host's traffic leaves with when the boot succeeded."""
    box = nat_b_sandbox(lab, _port(aws), workdir, image=image, attach=vpc.attach)
    egress = None
    with box:
        box.wait(timeout=BOOT_TIMEOUT)
        if box.exit_code == 0:
            vpc.wait_for_event(rf"0\.0\.0\.0/0 → {lab.eni[lab.nat_b]}")
            egress = vpc.whoami()
    return box, egress


def _route_target(lab: CloudLab) -> str:
    table = lab.ec2.describe_route_tables(RouteTableIds=[lab.private_rtb])["RouteTables"][0]
    return next(r["NetworkInterfaceId"] for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")


def _dnf_calls(box: InstanceSandbox) -> list[str]:
    return [call for call in box.shim_calls() if call.startswith("dnf ")]


@needs_netns
def test_boot_on_the_default_image_installs_nftables_once_with_swap_and_serves_the_zone(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path
) -> None:
    host_swaps = Path("/proc/swaps").read_text()
    box, egress = _boot_nat_b(aws, lab, vpc, Image("al2023"), tmp_path)
    assert box.exit_code == 0, box.describe()
    assert egress == lab.public_ip[lab.nat_b], "a private host's traffic leaves through NAT B"
    assert _dnf_calls(box) == [INSTALL]
    steps = box.step_times()
    assert steps["install"].status == "done" and "nftables installed" in steps["install"].notes
    assert list(steps).index("install") < list(steps).index("routes")
    # 512 MiB and no swap: a swap file for the install only, sparse, in the instance's overlay, gone after
    swap = "/var/lib/nat-instance/install.swap"
    calls = box.shim_calls()
    assert [c for c in calls if c.split()[0] in ("fallocate", "mkswap", "swapon", "swapoff")] == [
        f"fallocate --length 1G {swap}",
        f"mkswap {swap}",
        f"swapon {swap}",
        f"swapoff {swap}",
    ]
    assert calls.index(f"swapon {swap}") < calls.index(INSTALL) < calls.index(f"swapoff {swap}")
    assert not (box.upper("/var/lib") / "nat-instance" / "install.swap").is_file(), "removed after the install"
    assert not Path(swap).exists() and Path("/proc/swaps").read_text() == host_swaps, "nothing lands on the host"
    assert "rpm -q nftables" in calls and "nftables-rpm=nftables-natlab" in box.boot_log()


@needs_netns
def test_boot_on_the_baked_image_runs_no_dnf(aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path) -> None:
    box, egress = _boot_nat_b(aws, lab, vpc, Image("baked"), tmp_path)
    assert box.exit_code == 0, box.describe()
    assert egress == lab.public_ip[lab.nat_b], "a private host's traffic leaves through NAT B"
    assert _dnf_calls(box) == [] and "install" not in box.step_times()
    assert not any(call.startswith(("fallocate", "swapon")) for call in box.shim_calls())


@needs_netns
@pytest.mark.parametrize(
    ("fault", "reason"), [("fail", "exit status 1"), ("oom", "killed (SIGKILL: out of memory?)")], ids=["fail", "oom"]
)
def test_a_dnf_install_that_fails_once_is_retried_and_the_nat_serves(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path, fault: str, reason: str
) -> None:
    box, egress = _boot_nat_b(aws, lab, vpc, Image("al2023", DnfModel(fault, fault_attempts=1)), tmp_path)
    assert box.exit_code == 0, box.describe()
    assert _dnf_calls(box) == [INSTALL, INSTALL]
    assert f"dnf install nftables failed: {reason} (attempt 1 of 2)" in box.step_times()["install"].notes
    assert egress == lab.public_ip[lab.nat_b], "a private host's traffic leaves through NAT B"


@needs_netns
@pytest.mark.parametrize(
    ("fault", "reason"), [("fail", "exit status 1"), ("hang", "timed out after 1.2 s")], ids=["fail", "hang"]
)
def test_a_dnf_install_that_never_succeeds_fails_the_boot_before_any_route_moves(
    aws: Any, lab: CloudLab, vpc: EmulatedVpc, tmp_path: Path, fault: str, reason: str
) -> None:
    box, _ = _boot_nat_b(aws, lab, vpc, Image("al2023", DnfModel(fault)), tmp_path)
    assert box.exit_code not in (0, None), box.describe()
    assert _dnf_calls(box) == [INSTALL, INSTALL]
    install = box.step_times()["install"]
    assert install.status == "error", box.describe()
    failures = [note for note in install.notes if note.startswith("dnf install nftables failed")]
    assert failures == [f"dnf install nftables failed: {reason} (attempt {n} of 2)" for n in (1, 2)], install
    assert install.notes[-1] == "giving up: nftables could not be installed", install
    assert "routes" not in box.step_times() and _route_target(lab) == lab.eni[lab.nat_a], "no route moved"
    assert f"swapoff {'/var/lib/nat-instance/install.swap'}" in box.shim_calls(), "the swap goes on failure too"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Image("ubuntu"), "image profile must be one of al2023, baked, got 'ubuntu'"),
        (lambda: DnfModel("slow"), "dnf fault must be one of none, fail, hang, oom, got 'slow'"),
        (lambda: DnfModel("fail", fault_attempts=-1), "dnf fault_attempts must be 0 .every call. or more, got -1"),
        (lambda: Image(memory_mib=32), "image memory_mib must be at least 64, got 32"),
    ],
)
def test_a_bad_image_is_refused_with_the_field_and_what_is_allowed(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
