"""The instance roles' policies, as Terraform plans them: least privilege, no way to stop or terminate.

`terraform test -json -verbose` prints the plan of every run as a `test_plan` message. The runs of
tests/iam.tftest.hcl cover the module's feature combinations (Elastic IPs none/create/existing,
alarm and hook on/off, SNS topic), so each planned policy document (one per zone) is checked here
against rules stated independently of the module's code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IAM_TEST_FILE = "tests/iam.tftest.hcl"
READ_ONLY_PREFIXES = ("Describe", "Get", "List")
POLICY_ADDRESS = "aws_iam_role_policy.this"
ASG_ADDRESS = "aws_autoscaling_group.this"
#: Actions through which a role could stop, terminate or reboot instances, directly or by having
#: another service do it (an alarm's EC2 action runs as CloudWatch's service-linked role, which may
#: terminate any instance; SetAlarmState fires the actions of existing alarms).
STOPPING_ACTIONS = {
    "ec2:TerminateInstances",
    "ec2:StopInstances",
    "ec2:RebootInstances",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:PutCompositeAlarm",
    "cloudwatch:SetAlarmState",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:SetInstanceHealth",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:UpdateAutoScalingGroup",
    "iam:PassRole",
    "ssm:SendCommand",
    "ssm:StartAutomationExecution",
    "events:PutTargets",
}
#: Of those, the ones that are harmless when their resource is one of the module's own groups.
GROUP_SCOPED_ACTIONS = {
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:SetInstanceHealth",
}
#: Takeover (README, "Seconds-level failover"): the only statements that may name other zones' tables
#: and groups of this module, each with the one action it needs; and the one action that may reach
#: another zone's group (marking a dead peer unhealthy).
TAKEOVER_STATEMENTS = {
    "TakeOverPeerZonesRoutes": ["ec2:ReplaceRoute"],
    "MarkPeerUnhealthyInOwnGroups": ["autoscaling:SetInstanceHealth"],
}
PEER_GROUP_ACTIONS = {"autoscaling:SetInstanceHealth"}

log = logging.getLogger(__name__)

pytestmark = [
    pytest.mark.terraform,
    pytest.mark.skipif(shutil.which("terraform") is None, reason="the terraform CLI is not on PATH"),
]


def _terraform(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    command = ["terraform", *args]
    log.info("running %s in %s", " ".join(command), REPO_ROOT)
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_IN_AUTOMATION": "1"},
    )


@pytest.fixture(scope="module")
def planned_plans() -> dict[str, dict[str, Any]]:
    """The plan of each run of tests/iam.tftest.hcl, keyed by run name."""
    if not (REPO_ROOT / ".terraform" / "providers").is_dir():
        init = _terraform("init", "-backend=false", "-input=false", timeout=300)
        assert init.returncode == 0, f"terraform init failed:\n{init.stderr}"
    result = _terraform("test", "-json", "-verbose", f"-filter={IAM_TEST_FILE}", timeout=600)
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (
        f"`terraform test -filter={IAM_TEST_FILE}` failed; reproduce with that command.\n"
        + "\n".join(m["@message"] for m in messages if m.get("@level") == "error")
        + result.stderr
    )
    return {m["@testrun"]: m["test_plan"] for m in messages if m.get("type") == "test_plan"}


@pytest.fixture(scope="module")
def planned_policies(planned_plans: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Policy document of each zone's role in each run, keyed "<run> <resource address>"."""
    policies: dict[str, dict[str, Any]] = {}
    for run, plan in planned_plans.items():
        for change in plan.get("resource_changes", []):
            if change["address"].startswith(f"{POLICY_ADDRESS}["):
                policy = change["change"]["after"].get("policy")
                assert isinstance(policy, str), f"run {run}: policy unknown at plan time"
                policies[f"{run} {change['address']}"] = json.loads(policy)
    return policies


def _group_names(plan: dict[str, Any]) -> dict[str, str]:
    """Zone -> the Auto Scaling group name the plan creates for it."""
    return {
        change["index"]: change["change"]["after"]["name"]
        for change in plan.get("resource_changes", [])
        if change["address"].startswith(f"{ASG_ADDRESS}[")
    }


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _is_read_only(action: str) -> bool:
    service_action = action.split(":", 1)[1]
    return "*" not in service_action and service_action.startswith(READ_ONLY_PREFIXES)


def test_every_iam_run_planned_a_policy(planned_policies: dict[str, dict[str, Any]]) -> None:
    assert len(planned_policies) >= 5, f"expected a plan per run of {IAM_TEST_FILE}, got {sorted(planned_policies)}"


def test_no_mutating_action_on_every_resource(planned_policies: dict[str, dict[str, Any]]) -> None:
    for run, policy in planned_policies.items():
        for statement in _statements(policy):
            if "*" not in _as_list(statement["Resource"]):
                continue
            mutating = [action for action in _as_list(statement["Action"]) if not _is_read_only(action)]
            assert mutating == [], (
                f"run {run}, statement {statement.get('Sid')}: {mutating} on Resource '*'; "
                "only Describe*/Get*/List* may use '*'"
            )


def test_wildcard_resource_paths_are_narrowed_by_a_condition(
    planned_policies: dict[str, dict[str, Any]],
) -> None:
    for run, policy in planned_policies.items():
        for statement in _statements(policy):
            resources = _as_list(statement["Resource"])
            if resources == ["*"]:
                continue
            wildcard = [arn for arn in resources if arn.endswith("/*")]
            if wildcard:
                assert "Condition" in statement, (
                    f"run {run}, statement {statement.get('Sid')}: {wildcard} needs a tag condition"
                )


def test_policy_only_allows(planned_policies: dict[str, dict[str, Any]]) -> None:
    for run, policy in planned_policies.items():
        for statement in _statements(policy):
            assert statement["Effect"] == "Allow", f"run {run}: {statement.get('Sid')} is not an Allow statement"
            assert "NotAction" not in statement and "NotResource" not in statement, (
                f"run {run}, statement {statement.get('Sid')}: NotAction/NotResource grant too much"
            )


def test_actions_name_no_wildcards(planned_policies: dict[str, dict[str, Any]]) -> None:
    for run, policy in planned_policies.items():
        for statement in _statements(policy):
            wildcards = [action for action in _as_list(statement["Action"]) if "*" in action]
            assert wildcards == [], f"run {run}, statement {statement.get('Sid')}: wildcard actions {wildcards}"


def test_no_statement_lets_a_role_stop_or_terminate_outside_this_modules_groups(
    planned_plans: dict[str, dict[str, Any]],
) -> None:
    for run, plan in planned_plans.items():
        groups = _group_names(plan)
        for change in plan.get("resource_changes", []):
            if not change["address"].startswith(f"{POLICY_ADDRESS}["):
                continue
            own_group = groups[change["index"]]
            for statement in _statements(json.loads(change["change"]["after"]["policy"])):
                for action in set(_as_list(statement["Action"])) & STOPPING_ACTIONS:
                    resources = _as_list(statement["Resource"])
                    allowed = set(groups.values()) if action in PEER_GROUP_ACTIONS else {own_group}
                    scoped = action in GROUP_SCOPED_ACTIONS and all(
                        arn.split(":autoScalingGroupName/")[-1] in allowed and ":autoScalingGroupName/" in arn
                        for arn in resources
                    )
                    assert scoped, (
                        f"run {run}, {change['address']}, statement {statement.get('Sid')}: {action} on "
                        f"{resources} could stop or terminate instances outside {sorted(allowed)}"
                    )


def test_each_zones_role_touches_only_its_own_zone(planned_plans: dict[str, dict[str, Any]]) -> None:
    for run, plan in planned_plans.items():
        groups = _group_names(plan)
        for change in plan.get("resource_changes", []):
            if not change["address"].startswith(f"{POLICY_ADDRESS}["):
                continue
            zone = change["index"].removesuffix("-standby")  # a standby's role belongs to its zone
            others = [name for other, name in groups.items() if other.removesuffix("-standby") != zone]
            others += [table for other, table in _route_tables(plan) if other != zone]
            statements = _statements(json.loads(change["change"]["after"]["policy"]))
            for statement in statements:
                if statement.get("Sid") in TAKEOVER_STATEMENTS:
                    assert statement["Action"] == TAKEOVER_STATEMENTS[statement["Sid"]], (
                        f"run {run}, {change['address']}: takeover statement {statement['Sid']} may allow only "
                        f"{TAKEOVER_STATEMENTS[statement['Sid']]}, allows {statement['Action']}"
                    )
            text = json.dumps([s for s in statements if s.get("Sid") not in TAKEOVER_STATEMENTS])
            leaked = [name for name in others if f'"{name}"' in text or f"/{name}" in text]
            assert leaked == [], f"run {run}, {change['address']} names other zones' groups or tables {leaked}"


def test_takeover_reaches_nothing_outside_the_module(planned_plans: dict[str, dict[str, Any]]) -> None:
    for run, plan in planned_plans.items():
        module_names = set(_group_names(plan).values()) | {table for _, table in _route_tables(plan)}
        for change in plan.get("resource_changes", []):
            if not change["address"].startswith(f"{POLICY_ADDRESS}["):
                continue
            for statement in _statements(json.loads(change["change"]["after"]["policy"])):
                if statement.get("Sid") not in TAKEOVER_STATEMENTS:
                    continue
                named = {arn.rsplit("/", 1)[-1] for arn in _as_list(statement["Resource"])}
                assert named <= module_names, (
                    f"run {run}, {change['address']}: {statement['Sid']} names {sorted(named - module_names)}, "
                    "which this module did not create"
                )


def _route_tables(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(zone, route table id) of every private route the plan creates."""
    return [
        (change["index"].split("/", 1)[0], change["change"]["after"]["route_table_id"])
        for change in plan.get("resource_changes", [])
        if change["address"].startswith("aws_route.private_default[")
    ]
