"""Backends: moto in-process (also a LocalStack-style edge), LocalStack probing, real-AWS guards."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from localstack_client.session import Session as LocalStackSession
from test_moto_fixes import make_group

from natlab.cloud.backend import (
    RUN_ID_TAG,
    AwsBackend,
    BackendError,
    LocalStackBackend,
    MotoBackend,
    make_backend,
)
from natlab.lab import preflight
from natlab.lab.settings import HarnessSettings
from natlab.lab.terraform import TerraformWorkdir
from natlab.lab.terraform_error import TerraformError

# --- moto ----------------------------------------------------------------------------------------


def test_moto_binds_a_free_loopback_port_and_serves_every_service_on_it(aws: MotoBackend) -> None:
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
    assert aws.port not in (0, None)
    assert aws.client("sts").get_caller_identity()["Account"] == "123456789012"
    assert aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_moto_env_points_the_cli_and_terraform_at_the_emulator(aws: MotoBackend) -> None:
    env = aws.env()
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint_url
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_REGION"]) == ("test", "us-east-1")
    assert aws.tf_vars() == {"region": "us-east-1", "endpoint_url": aws.endpoint_url}


def test_moto_reset_forgets_everything(aws: MotoBackend) -> None:
    aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
    aws.reset()
    cidrs = [v["CidrBlock"] for v in aws.client("ec2").describe_vpcs()["Vpcs"]]
    assert "10.9.0.0/16" not in cidrs


def test_localstack_client_builds_working_clients_against_moto(
    aws: MotoBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # it would win over localstack_host
    session = LocalStackSession(localstack_host=aws.localstack_host, region_name=aws.region)
    ec2 = session.client("ec2")
    assert ec2.meta.endpoint_url == aws.endpoint_url
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    assert aws.client("ec2").describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"] == "10.7.0.0/16"


def test_moto_stops_when_the_context_exits() -> None:
    with MotoBackend() as backend:
        url = backend.endpoint_url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
    backend.close()  # twice is fine


# --- LocalStack ----------------------------------------------------------------------------------


class _BlockingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to moto, but answers one service like LocalStack community answers Auto Scaling."""

    upstream = ""
    blocked = "autoscaling"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if f"/{self.blocked}/aws4_request" in self.headers.get("Authorization", ""):
            payload = (
                b"<ErrorResponse><Error><Code>InternalFailure</Code><Message>API for service "
                b"'autoscaling' not yet implemented or pro feature - please check "
                b"https://docs.localstack.cloud/references/coverage/ for further information"
                b"</Message></Error></ErrorResponse>"
            )
            self._answer(501, payload, "text/xml")
            return
        request = urllib.request.Request(
            self.upstream + self.path, data=body, headers=dict(self.headers), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            self._answer(response.status, response.read(), response.headers["Content-Type"])

    def _answer(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def localstack_without_autoscaling(aws: MotoBackend) -> Iterator[str]:
    handler = type("Handler", (_BlockingProxy,), {"upstream": aws.endpoint_url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_localstack_without_autoscaling_is_refused_naming_the_service(
    localstack_without_autoscaling: str,
) -> None:
    with pytest.raises(BackendError) as refused, LocalStackBackend(localstack_without_autoscaling):
        pass
    message = str(refused.value)
    assert f"LocalStack at {localstack_without_autoscaling} does not serve autoscaling" in message
    assert "HTTP 501" in message
    assert "ec2 (" not in message


def test_localstack_serving_everything_is_accepted(aws: MotoBackend) -> None:
    with LocalStackBackend(aws.endpoint_url) as backend:
        assert backend.client("ec2").describe_vpcs()["Vpcs"] is not None


def test_unreachable_localstack_is_named_once_with_what_to_do() -> None:
    refused = r"nothing answers at http://127\.0\.0\.1:9 \(Connection refused\); start LocalStack there or fix the URL"
    with pytest.raises(BackendError, match=refused):
        LocalStackBackend("http://127.0.0.1:9", services=["sts"]).start()


# --- real AWS ------------------------------------------------------------------------------------


def test_aws_refuses_to_start_without_cost_confirmation() -> None:
    with pytest.raises(BackendError, match="--aws-confirm-costs"), AwsBackend("us-east-1", run_id="r1"):
        pass


def test_aws_refuses_to_start_without_a_region() -> None:
    with pytest.raises(BackendError, match="--region"):
        make_backend("aws", run_id="r1", aws_confirm_costs=True).start()


def test_aws_sweep_deletes_what_carries_the_run_id_and_nothing_else(aws: MotoBackend) -> None:
    """Against moto: the only place this can be tested without an AWS account."""
    run = "run-sweep"
    tags = [{"Key": RUN_ID_TAG, "Value": run}]
    ids = make_group(aws, tags={RUN_ID_TAG: run})
    ec2, iam = aws.client("ec2"), aws.client("iam")
    ec2.create_tags(Resources=[ids["template"]], Tags=tags)
    ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}])
    ec2.create_network_interface(
        SubnetId=ids["subnet"],
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": tags}],
    )
    ec2.create_security_group(
        GroupName="nat",
        Description="nat",
        VpcId=ids["vpc"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    kept = ec2.create_security_group(GroupName="other", Description="x", VpcId=ids["vpc"])
    iam.create_role(RoleName="nat", AssumeRolePolicyDocument="{}", Tags=tags)
    iam.create_instance_profile(InstanceProfileName="nat")
    iam.add_role_to_instance_profile(InstanceProfileName="nat", RoleName="nat")
    iam.create_role(RoleName="other", AssumeRolePolicyDocument="{}")
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName="nat-status",
        Namespace="AWS/EC2",
        MetricName="StatusCheckFailed",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Tags=tags,
    )

    with AwsBackend("us-east-1", run_id=run, confirm_costs=True, endpoint_url=aws.endpoint_url) as backend:
        deleted = backend.sweep()

    kinds = {d.split("/")[0] for d in deleted}
    assert kinds == {"asg", "alarm", "lt", "eip", "eni", "sg", "role"}  # ForceDelete took the NAT
    reservations = ec2.describe_instances(Filters=[{"Name": f"tag:{RUN_ID_TAG}", "Values": [run]}])
    states = {i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]}
    assert states == {"terminated"}
    assert aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [ids["vpc"]]}])
    names = {g["GroupName"] for g in groups["SecurityGroups"]}
    assert "nat" not in names and kept["GroupId"] in {g["GroupId"] for g in groups["SecurityGroups"]}
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["other"]
    assert ec2.describe_addresses()["Addresses"] == []


# --- Terraform against the backend ---------------------------------------------------------------


def test_missing_terraform_cli_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TerraformError, match=r"Terraform CLI not found on PATH; install Terraform >= 1\.9"):
        TerraformWorkdir(tmp_path).start()


def test_preflight_names_an_edge_without_auto_scaling_at_start_up(localstack_without_autoscaling: str) -> None:
    settings = HarnessSettings(backend="localstack", endpoint_url=localstack_without_autoscaling)
    problem = preflight.backend_problem(settings)
    assert problem is not None
    assert problem.startswith(f"--endpoint-url {localstack_without_autoscaling}: LocalStack at")
    assert "does not serve autoscaling (HTTP 501" in problem
