"""natlab.cloud.sandbox and .fleet: an emulated instance really boots its user data against moto, and leaves nothing."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.cloud.boot_env import SHIMS_DIR
from natlab.cloud.fleet import InstanceFleet, identity_from_backend
from natlab.cloud.imds import InstanceIdentity
from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.netns_names import PREFIX, RUN_ID, list_namespaces
from natlab.cloud.overlay import mirror_directories
from natlab.cloud.relay import TcpRelay
from natlab.cloud.sandbox import InstanceSandbox

pytestmark = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")

REGION = "us-east-1"
LOG_FN = r"""log() { printf '%s nat-boot: step=%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "$2"; }"""

SELF_TAGGING_USER_DATA = f"""#!/usr/bin/env bash
set -o errexit -o nounset -o pipefail
exec > >(tee -a /var/log/nat-instance-boot.log) 2>&1
{LOG_FN}
log identity start
token="$(curl --fail --silent --show-error -X PUT \
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)"
id="$(curl --fail --silent --show-error -H "X-aws-ec2-metadata-token: $token" \
  http://169.254.169.254/latest/meta-data/instance-id)"
log identity done
log tag start
aws ec2 create-tags --resources "$id" --tags Key=booted-by,Value=natlab
log tag done
mkdir -p /etc/nftables
echo "table ip nat_instance" >/etc/nftables/nat-instance.nft
systemctl enable nftables
""".encode()


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoBackend]:
    with MotoBackend(region=REGION) as backend:
        yield backend


@pytest.fixture
def moto(moto_server: MotoBackend) -> MotoBackend:
    """The module's moto, emptied for this test."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def moto_port(moto: MotoBackend) -> int:
    assert moto.port is not None
    return moto.port


@pytest.fixture
def ec2(moto: MotoBackend) -> Any:
    return moto.client("ec2")


def _subnet(ec2: Any) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]


@pytest.fixture
def identity(ec2: Any) -> InstanceIdentity:
    subnet = _subnet(ec2)
    iid = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0][
        "InstanceId"
    ]
    instance = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return identity_from_backend(ec2, instance, REGION)


def _leftovers(marker: str) -> tuple[list[str], list[int]]:
    """This run's namespaces, and PIDs whose command line mentions ``marker``."""
    names = list_namespaces(f"{PREFIX}{RUN_ID}-")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return names, pids


# -- the sandbox ------------------------------------------------------------------------------------


def test_user_data_tags_its_own_instance_through_imds_and_the_relay(
    ec2: Any, moto_port: int, identity: InstanceIdentity
) -> None:
    box = InstanceSandbox(identity, SELF_TAGGING_USER_DATA, moto_port)
    with box:
        assert box.wait(timeout=30) == 0, box.describe()
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [identity.instance_id]}])
        assert {"Key": "booted-by", "Value": "natlab"} in [{"Key": t["Key"], "Value": t["Value"]} for t in tags["Tags"]]
        # the log file the script wrote, in the /var/log overlay
        assert "step=tag done" in box.boot_log()
        assert box.boot_log_path.is_relative_to(box.dir)
        steps = box.step_times()
        assert list(steps) == ["identity", "tag"]
        assert all(s.status == "done" and (s.seconds or 0) >= 0 for s in steps.values())
        # /etc writes landed in the overlay, not on the host
        assert box.etc_changes() == {"nftables/nat-instance.nft": "table ip nat_instance\n"}
        assert not Path("/etc/nftables/nat-instance.nft").exists()
        tag_call = f"aws ec2 create-tags --resources {identity.instance_id} --tags Key=booted-by,Value=natlab"
        assert box.shim_calls() == [tag_call, "systemctl enable nftables"]
        # the script's token and instance id, then the CLI's own reads of the role credentials
        requests = [(r.method, r.path, r.status) for r in box.imds_requests]
        assert [(m, s) for m, _, s in requests[:2]] == [("PUT", 200), ("GET", 200)]
        assert any(path.startswith("/latest/meta-data/iam/security-credentials/") for _, path, _ in requests[2:])
        ns_name = box.ns.name if box.ns else ""
        assert ns_name in list_namespaces()
    assert not box.dir.exists()
    names, pids = _leftovers(identity.instance_id)
    assert names == [] and pids == []


ENABLING_USER_DATA = b"""#!/usr/bin/env bash
set -o errexit -o nounset -o pipefail
echo "user data ran" >>/var/log/runs.log
cat >/usr/local/sbin/natlab-probe <<'EOF'
#!/usr/bin/env bash
token="$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)"
state="$(curl -sf -H "X-aws-ec2-metadata-token: ${token}" \\
  http://169.254.169.254/latest/meta-data/autoscaling/target-lifecycle-state)"
echo "unit ran $1 ${state}" >>/var/log/runs.log
EOF
chmod 0755 /usr/local/sbin/natlab-probe
unit=/etc/systemd/system/natlab-probe.service
printf '[Service]\\nType=oneshot\\nExecStart=/usr/local/sbin/natlab-probe again\\n' >"${unit}"
printf '[Install]\\nWantedBy=multi-user.target\\n' >>"${unit}"
systemctl enable natlab-probe.service
"""


def test_a_started_again_instance_runs_its_enabled_units_not_its_user_data(
    moto_port: int, identity: InstanceIdentity
) -> None:
    first = InstanceSandbox(identity, ENABLING_USER_DATA, moto_port, target_lifecycle_state="Warmed:Stopped")
    with first:
        assert first.wait(timeout=30) == 0, first.describe()
        first.terminate()  # stopped: the instance dir (its disk) stays
        link = first.upper("/etc") / "systemd/system/multi-user.target.wants/natlab-probe.service"
        assert link.is_symlink() and str(link.readlink()) == "/etc/systemd/system/natlab-probe.service"
        assert not Path("/usr/local/sbin/natlab-probe").exists(), "the script was written to the host"
        again = InstanceSandbox(
            identity,
            ENABLING_USER_DATA,
            moto_port,
            workdir=first.dir.parent,
            target_lifecycle_state="InService",
            started_again=True,
        )
        with again:
            assert again.wait(timeout=30) == 0, again.describe()
            runs = (again.upper("/var/log") / "runs.log").read_text().splitlines()
    assert runs == ["user data ran", "unit ran again InService"]


def test_environment_is_built_from_scratch(
    monkeypatch: pytest.MonkeyPatch, moto_port: int, identity: InstanceIdentity
) -> None:
    monkeypatch.setenv("NATLAB_HOST_ONLY", "leak")
    user_data = b'#!/usr/bin/env bash\nenv >"$HOME/env.txt"\n[[ ! -e "$HOME/.aws" ]]\nhostname >"$HOME/hostname"\n'
    with InstanceSandbox(identity, user_data, moto_port, keep=False) as box:
        assert box.wait(timeout=10) == 0, box.describe()
        env = dict(line.split("=", 1) for line in (box.dir / "env.txt").read_text().splitlines())
        assert (box.dir / "hostname").read_text().strip() == "ip-" + identity.private_ip.replace(".", "-")
    assert "NATLAB_HOST_ONLY" not in env
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_DEFAULT_REGION"] == REGION
    assert env["PATH"].split(":")[0] == str(SHIMS_DIR)
    assert set(env) - {"PWD", "OLDPWD", "SHLVL", "_"} == set(box.environment())


def test_what_an_instance_writes_under_run_stays_in_its_own_dir(moto_port: int, identity: InstanceIdentity) -> None:
    marker = f"natlab-run-{identity.instance_id}"
    user_data = f"#!/usr/bin/env bash\nmkdir -p /run/{marker}\necho covered >/run/{marker}/state\n".encode()
    with InstanceSandbox(identity, user_data, moto_port, keep=False) as box:
        assert box.wait(timeout=10) == 0, box.describe()
        if "/run" in box.overlays.mountpoints:  # else a rootless run: /run is its private tmpfs
            assert box.overlays.changes("/run") == {f"{marker}/state": "covered\n"}
    assert not Path(f"/run/{marker}").exists(), "the instance wrote to the host's /run"


def test_broken_user_data_exits_non_zero_and_its_step_shows_the_error(
    moto_port: int, identity: InstanceIdentity
) -> None:
    script = f"#!/usr/bin/env bash\n{LOG_FN}\nlog routes start\nBREAK_HERE\nlog routes done\n".encode()

    def break_it(data: bytes) -> bytes:
        return data.replace(b"BREAK_HERE", b'log routes "error line=4"; exit 3')

    env = {"NAT_LOG_FILE": "/var/log/custom.log"}
    script = script.replace(b"log() {", b'exec > >(tee -a "$NAT_LOG_FILE") 2>&1\nlog() {')
    with InstanceSandbox(identity, script, moto_port, env=env, user_data_transform=break_it) as box:
        assert box.wait(timeout=10) == 3
        assert box.boot_log_path == box.upper("/var/log") / "custom.log"
        step = box.step_times()["routes"]
        assert (step.status, step.message) == ("error", "error line=4")


def test_kill_ends_a_hanging_boot_and_the_namespace_dies_with_the_instance(
    moto_port: int, identity: InstanceIdentity
) -> None:
    with InstanceSandbox(identity, b"#!/usr/bin/env bash\nsleep 300 &\nsleep 301\n", moto_port) as box:
        assert box.running
        box.terminate()
        assert box.wait(timeout=5) == -9
        assert box.ns is not None and not box.ns.exists()
        assert box.dir.exists()  # the dead instance's files stay until close()
    names, pids = _leftovers(identity.instance_id)
    assert names == [] and pids == []


def test_a_start_that_fails_half_way_leaves_no_namespace_and_no_files(
    moto_port: int, identity: InstanceIdentity
) -> None:
    def no_bridge(ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None:
        raise OSError("no bridge for the subnet")

    box = InstanceSandbox(identity, b"#!/usr/bin/env bash\n", moto_port, attach=no_bridge)
    with pytest.raises(OSError, match="no bridge"), box:
        pass
    assert box.ns is not None and not box.ns.exists()
    assert not box.dir.exists()
    assert _leftovers(identity.instance_id) == ([], [])


def test_boot_delay_postpones_the_user_data(moto_port: int, identity: InstanceIdentity) -> None:
    user_data = b'#!/usr/bin/env bash\ndate +%s.%N >"$HOME/started"\n'
    with InstanceSandbox(identity, user_data, moto_port, boot_delay=0.3) as box:
        assert box.wait(timeout=10) == 0
        assert box.started_at is not None
        assert float((box.dir / "started").read_text()) - box.started_at >= 0.3


# -- the relay --------------------------------------------------------------------------------------


class _Blob(http.server.BaseHTTPRequestHandler):
    body = os.urandom(1 << 20)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_relay_carries_a_megabyte_from_host_loopback_into_the_namespace() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blob)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with Namespace("t-relay") as ns, TcpRelay(ns, server.server_address[1]) as relay:
            out = ns.run(
                ["curl", "--fail", "--silent", "--max-time", "10", "http://127.0.0.1:4566/blob"], check=True, timeout=15
            )
            assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(_Blob.body).digest()
            assert relay.connections == 1
    finally:
        server.shutdown()
        server.server_close()


def test_relay_refuses_a_non_loopback_target() -> None:
    with Namespace("t-relay-bad") as ns, pytest.raises(ValueError, match="loopback"):
        TcpRelay(ns, 80, target_host="10.0.0.1")


# -- the fleet --------------------------------------------------------------------------------------


def test_fleet_boots_asg_instances_and_kills_the_terminated_one(moto: MotoBackend, ec2: Any, moto_port: int) -> None:
    subnet = _subnet(ec2)
    user_data = (
        b"#!/usr/bin/env bash\n"
        b"curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 9' "
        b"http://169.254.169.254/latest/api/token >/dev/null\n"
        b"sleep 300\n"
    )
    ec2.create_launch_template(
        LaunchTemplateName="nat-a",
        LaunchTemplateData={
            "ImageId": "ami-12345678",
            "InstanceType": "t4g.nano",
            "UserData": base64.b64encode(user_data).decode(),
        },
    )
    autoscaling = moto.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="nat-a",
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": "nat-a", "Version": "$Latest"},
        VPCZoneIdentifier=subnet,
    )
    first = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"][0]
    # a plain instance outside any ASG is left alone
    ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet)
    events = []
    with InstanceFleet(moto_port, region=REGION, on_event=events.append) as fleet:
        old = fleet.wait_booted(first["InstanceId"], timeout=5)
        assert old.user_data == user_data
        assert old.identity.subnet_id == subnet
        assert len(fleet.sandboxes) == 1
        ec2.terminate_instances(InstanceIds=[first["InstanceId"]])  # moto replaces it at once
        new = fleet.wait_for(
            lambda f: next((b for b in f.live() if b.identity.instance_id != first["InstanceId"]), None), timeout=5
        )
        fleet.wait_for(lambda f: old if old.terminated else None, timeout=5)
        assert old.ns is not None and not old.ns.exists()
        assert new.running
        kinds = [(e.kind, e.instance_id) for e in events]
        assert ("boot-start", first["InstanceId"]) in kinds
        assert ("terminated", first["InstanceId"]) in kinds
        assert ("boot-start", new.identity.instance_id) in kinds
    names, pids = _leftovers(first["InstanceId"])
    assert names == [] and pids == []
    assert _leftovers(new.identity.instance_id) == ([], [])


def test_rootless_overlay_gets_the_lower_directories_with_their_modes(tmp_path: Path) -> None:
    lower, upper = tmp_path / "etc", tmp_path / "upper"
    (lower / "sysctl.d").mkdir(parents=True)
    (lower / "ssl" / "private").mkdir(parents=True)
    (lower / "ssl" / "private").chmod(0o700)
    (lower / "hostname").write_text("lower file\n")
    upper.mkdir()
    mirror_directories(lower, upper)
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["ssl", "ssl/private", "sysctl.d"]
    assert (upper / "ssl" / "private").stat().st_mode & 0o777 == 0o700
