"""A lab's first apply is repeated once for a known emulator race, and only for that."""

from __future__ import annotations

import pytest

from natlab.lab.emulator_races import apply_retrying_emulator_races
from natlab.lab.terraform_error import TerraformError

RACE = "api error InvalidPermission.Duplicate: The specified rule already exists"
PROFILE_RACE = "api error LimitExceeded: Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1"
GROUP_RACE = (
    "creating Security Group (natlab-sb-20261130005034969800000005): operation error EC2: CreateSecurityGroup, "
    "https response error StatusCode: 400, api error InvalidGroup.Duplicate: The security group "
    "'natlab-sb-20261130005034969800000005' already exists"
)

REVOKE_RACE = (
    "revoking default IPv4 egress rule for Security Group (sg-c5c4c3eef111ac99c): operation error EC2: "
    "RevokeSecurityGroupEgress, https response error StatusCode: 400, api error InvalidPermission.NotFound: "
    "The specified rule does not exist in this security group"
)

TEMPLATE_RACE = (
    "creating EC2 Launch Template (natlab-3z-us-east-1c): operation error EC2: CreateLaunchTemplate, https "
    "response error StatusCode: 400, api error InvalidLaunchTemplateName.AlreadyExistsException: Launch template "
    "name already in use."
)


class FailingApplies:
    """Stands in for a TerraformWorkdir whose applies fail with the given messages, then succeed."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.applies = 0
        self.events: list[str] = []

    def apply(self) -> str:
        self.applies += 1
        self.events.append("apply")
        if self.failures:
            raise TerraformError(f"terraform apply failed (exit 1):\nError: {self.failures.pop(0)}")
        return ""

    def delete_launch_template(self, LaunchTemplateName: str) -> None:
        """Stands in for the EC2 client too: records the deletion among the applies."""
        self.events.append(f"delete {LaunchTemplateName}")


@pytest.mark.parametrize("race", [RACE, PROFILE_RACE, GROUP_RACE, REVOKE_RACE, TEMPLATE_RACE])
def test_a_known_race_is_applied_once_more(race: str) -> None:
    workdir = FailingApplies(race)
    apply_retrying_emulator_races(workdir, ec2=workdir)  # type: ignore[arg-type]
    assert workdir.applies == 2


def test_the_template_a_lost_race_made_is_deleted_before_the_second_apply() -> None:
    workdir = FailingApplies(TEMPLATE_RACE)
    apply_retrying_emulator_races(workdir, ec2=workdir)  # type: ignore[arg-type]
    assert workdir.events == ["apply", "delete natlab-3z-us-east-1c", "apply"]


def test_the_same_race_twice_fails_the_lab() -> None:
    workdir = FailingApplies(RACE, RACE)
    with pytest.raises(TerraformError, match="Duplicate"):
        apply_retrying_emulator_races(workdir, ec2=workdir)  # type: ignore[arg-type]
    assert workdir.applies == 2


def test_any_other_failure_is_not_retried() -> None:
    workdir = FailingApplies("creating EC2 Launch Template: InvalidParameterValue")
    with pytest.raises(TerraformError, match="InvalidParameterValue"):
        apply_retrying_emulator_races(workdir, ec2=workdir)  # type: ignore[arg-type]
    assert workdir.applies == 1
