"""The instance role's policy, as Terraform plans it, never grants a mutating action on Resource "*".

`terraform test -json -verbose` prints the plan of every run as a `test_plan` message. The runs of
tests/iam.tftest.hcl cover the module's feature combinations (Elastic IPs none/create/existing,
alarm and hook on/off, SNS topic), so each planned policy document is checked here against rules
stated independently of the module's code.
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
def planned_policies() -> dict[str, dict[str, Any]]:
    """Policy document planned by each run of tests/iam.tftest.hcl, keyed by run name."""
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
    policies: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message.get("type") != "test_plan":
            continue
        for change in message["test_plan"].get("resource_changes", []):
            if change["address"] == POLICY_ADDRESS:
                policy = change["change"]["after"].get("policy")
                assert isinstance(policy, str), f"run {message['@testrun']}: policy unknown at plan time"
                policies[message["@testrun"]] = json.loads(policy)
    return policies


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
