"""natlab.cloud.imds: IMDSv2 inside an instance namespace answers like EC2's, read with curl from inside."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from natlab.cloud.clients import EMULATOR_CREDENTIALS
from natlab.cloud.imds import ROLE_NAME, ImdsServer, InstanceIdentity
from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import namespaces_available, unavailable_reason

pytestmark = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")

IDENTITY = InstanceIdentity(
    instance_id="i-0123456789abcdef0",
    region="eu-west-1",
    az="eu-west-1b",
    mac="02:00:00:12:34:56",
    interface_id="eni-0aaa",
    private_ip="10.0.2.15",
    subnet_id="subnet-0bbb",
    vpc_id="vpc-0ccc",
    vpc_cidrs=("10.0.0.0/16", "100.64.0.0/16"),
    subnet_cidr="10.0.2.0/24",
)
BASE = "http://169.254.169.254/latest"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Namespace, ImdsServer]]:
    with Namespace("t-imds") as ns, ImdsServer(ns, IDENTITY) as imds:
        yield ns, imds


def curl(ns: Namespace, *args: str) -> tuple[int, str]:
    """(HTTP status, body) of one curl run inside the namespace."""
    out = ns.run(
        ["curl", "--silent", "--show-error", "--max-time", "5", "--write-out", "\n%{http_code}", *args],
        check=True,
        timeout=10,
    )
    body, _, status = out.stdout.decode().rpartition("\n")
    return int(status), body


def token(ns: Namespace, ttl: str = "60") -> str:
    status, body = curl(ns, "-X", "PUT", "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}", f"{BASE}/api/token")
    assert status == 200, body
    return body


def test_get_without_a_token_is_401(served: tuple[Namespace, ImdsServer]) -> None:
    ns, _ = served
    assert curl(ns, f"{BASE}/meta-data/instance-id")[0] == 401
    assert curl(ns, "-H", "X-aws-ec2-metadata-token: forged", f"{BASE}/meta-data/instance-id")[0] == 401


@pytest.mark.parametrize("ttl", ["0", "21601", "abc", ""])
def test_token_with_a_ttl_outside_1_to_21600_is_400(served: tuple[Namespace, ImdsServer], ttl: str) -> None:
    ns, _ = served
    header = f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}" if ttl else "X-Other: 1"
    assert curl(ns, "-X", "PUT", "-H", header, f"{BASE}/api/token")[0] == 400


def test_metadata_values_match_the_identity(served: tuple[Namespace, ImdsServer]) -> None:
    ns, _ = served
    t = token(ns, "21600")
    mac = f"meta-data/network/interfaces/macs/{IDENTITY.mac}"
    expected = {
        "meta-data/instance-id": IDENTITY.instance_id,
        "meta-data/placement/region": IDENTITY.region,
        "meta-data/placement/availability-zone": IDENTITY.az,
        "meta-data/mac": IDENTITY.mac,
        "meta-data/local-ipv4": IDENTITY.private_ip,
        "meta-data/network/interfaces/macs/": f"{IDENTITY.mac}/",
        f"{mac}/interface-id": IDENTITY.interface_id,
        f"{mac}/subnet-id": IDENTITY.subnet_id,
        f"{mac}/vpc-id": IDENTITY.vpc_id,
        f"{mac}/vpc-ipv4-cidr-blocks": "10.0.0.0/16\n100.64.0.0/16",
        f"{mac}/local-ipv4s": IDENTITY.private_ip,
        f"{mac}/device-number": "0",
    }
    # one curl process for all paths (a curl start costs ~10 ms in a namespace)
    urls = [f"{BASE}/{path}" for path in expected]
    out = ns.run(
        [
            "bash",
            "-c",
            'for u in "$@"; do curl -sS -H "X-aws-ec2-metadata-token: $0" -w "\\n%{http_code}\\n---\\n" "$u"; done',
            t,
            *urls,
        ],
        check=True,
        timeout=10,
    )
    answers = out.stdout.decode().split("\n---\n")[:-1]
    got = {path: answer.rpartition("\n")[0] for path, answer in zip(expected, answers, strict=True)}
    assert got == expected
    assert all(answer.endswith("\n200") for answer in answers)


def test_unknown_paths_are_404(served: tuple[Namespace, ImdsServer]) -> None:
    ns, _ = served
    t = token(ns)
    assert curl(ns, "-H", f"X-aws-ec2-metadata-token: {t}", f"{BASE}/meta-data/no-such-thing")[0] == 404
    assert curl(ns, "-H", f"X-aws-ec2-metadata-token: {t}", f"{BASE}/meta-data/mac/deeper")[0] == 404
    assert curl(ns, "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 5", f"{BASE}/api/other")[0] == 404


def test_requests_are_recorded_with_status(served: tuple[Namespace, ImdsServer]) -> None:
    ns, imds = served
    before = len(imds.requests)
    curl(ns, f"{BASE}/meta-data/instance-id")
    last = imds.requests[before:]
    assert [(r.method, r.path, r.status) for r in last] == [("GET", "/latest/meta-data/instance-id", 401)]
    assert last[0].time > 0


def test_a_token_less_get_is_answered_only_when_imdsv1_is_allowed(served: tuple[Namespace, ImdsServer]) -> None:
    ns, default = served
    assert default.allow_v1 is False
    assert curl(ns, f"{BASE}/meta-data/instance-id")[0] == 401
    with Namespace("t-imds-v1") as v1_ns, ImdsServer(v1_ns, IDENTITY, allow_v1=True):
        assert curl(v1_ns, f"{BASE}/meta-data/instance-id") == (200, IDENTITY.instance_id)
        # v1 allowed does not make a forged token valid: EC2 answers 401 to a bad token either way
        forged = curl(v1_ns, "-H", "X-aws-ec2-metadata-token: forged", f"{BASE}/meta-data/instance-id")
        assert forged[0] == 401
        assert curl(v1_ns, "-H", f"X-aws-ec2-metadata-token: {token(v1_ns)}", f"{BASE}/meta-data/mac") == (
            200,
            IDENTITY.mac,
        )


def test_role_credentials_and_the_service_domain_are_served_like_ec2s(served: tuple[Namespace, ImdsServer]) -> None:
    ns, _ = served
    auth = ("-H", f"X-aws-ec2-metadata-token: {token(ns)}")
    assert curl(ns, *auth, f"{BASE}/meta-data/services/domain") == (200, "amazonaws.com")
    assert "iam/" in curl(ns, *auth, f"{BASE}/meta-data/")[1].splitlines()
    status, info = curl(ns, *auth, f"{BASE}/meta-data/iam/info")
    assert status == 200 and json.loads(info)["InstanceProfileArn"].endswith(f"/{ROLE_NAME}")
    assert curl(ns, *auth, f"{BASE}/meta-data/iam/security-credentials/") == (200, ROLE_NAME)
    status, document = curl(ns, *auth, f"{BASE}/meta-data/iam/security-credentials/{ROLE_NAME}")
    credentials = json.loads(document)
    assert status == 200 and credentials["Code"] == "Success"
    assert (credentials["AccessKeyId"], credentials["SecretAccessKey"]) == (
        EMULATOR_CREDENTIALS["aws_access_key_id"],
        EMULATOR_CREDENTIALS["aws_secret_access_key"],
    )
    assert credentials["Token"]
    expires = datetime.strptime(credentials["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expires - datetime.now(UTC) > timedelta(hours=1), "credentials must outlive any boot by far"


def test_target_lifecycle_state_is_served_once_set_and_follows_changes() -> None:
    with Namespace("t-imds-tls") as ns, ImdsServer(ns, IDENTITY) as imds:
        path = f"{BASE}/meta-data/autoscaling/target-lifecycle-state"
        header = f"X-aws-ec2-metadata-token: {token(ns)}"
        assert curl(ns, "-H", header, path)[0] == 404  # no Auto Scaling: no such path
        imds.set_target_lifecycle_state("Warmed:Stopped")
        assert curl(ns, "-H", header, path) == (200, "Warmed:Stopped")
        imds.set_target_lifecycle_state("InService")
        assert curl(ns, "-H", header, path) == (200, "InService")


def test_spot_notices_are_404_until_announced_then_served_as_ec2_writes_them() -> None:
    with Namespace("t-imds-spot") as ns, ImdsServer(ns, IDENTITY) as imds:
        header = f"X-aws-ec2-metadata-token: {token(ns)}"
        action, rebalance = (
            f"{BASE}/meta-data/spot/instance-action",
            f"{BASE}/meta-data/events/recommendations/rebalance",
        )
        assert curl(ns, "-H", header, action)[0] == 404 and curl(ns, "-H", header, rebalance)[0] == 404
        at = datetime(2026, 11, 29, 22, 2, 0, tzinfo=UTC)
        imds.recommend_rebalance(at - timedelta(minutes=4))
        assert curl(ns, "-H", header, rebalance) == (200, '{"noticeTime": "2026-11-29T21:58:00Z"}')
        assert curl(ns, "-H", header, action)[0] == 404, "a rebalance recommendation is not a notice"
        imds.announce_spot_interruption(at)
        assert curl(ns, "-H", header, action) == (200, '{"action": "terminate", "time": "2026-11-29T22:02:00Z"}')
