"""The ASG controller replaces NAT instances the way AWS would (moto alone never does)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_moto_fixes import group_instances, make_group, only_instance

from natlab.cloud.asg_controller import AsgHealthController
from natlab.cloud.asg_events import ABANDONED, ALARM, GONE, LAUNCHED, LIFECYCLE_TIMEOUT, TERMINATE, UNHEALTHY
from natlab.cloud.aws_delays import AwsDelays
from natlab.cloud.backend import MotoBackend
from natlab.cloud.zone_outages import ZONES
from natlab.waiting import wait_until

DELAYS = AwsDelays(
    poll_interval=0.02,
    stopped_detection=0.1,
    unhealthy_to_terminate=0.05,
    status_check_interval=0.1,
    alarm_evaluation=0.2,
    impaired_detection=0.6,
    abandon_to_terminate=0.05,
    lifecycle_timeout=0.4,
    grace_period=0.0,
    launch_retry=0.05,
)
TIMEOUT = 5.0


@pytest.fixture
def events() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def controller(aws: MotoBackend, events: list[tuple[str, str]]) -> Iterator[AsgHealthController]:
    def record(kind: str, instance_id: str, t: float) -> None:
        events.append((kind, instance_id))

    with AsgHealthController(aws, DELAYS, on_event=record) as running:
        yield running


def kinds_for(events: list[tuple[str, str]], instance_id: str) -> list[str]:
    return [kind for kind, i in events if i == instance_id]


def add_status_check_alarm(aws: MotoBackend, instance_id: str) -> None:
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=f"{instance_id}-status-check",
        Namespace="AWS/EC2",
        MetricName="StatusCheckFailed",
        Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[f"arn:aws:automate:{aws.region}:ec2:terminate"],
    )


def test_stopped_nat_is_marked_unhealthy_then_replaced(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)
    old = only_instance(aws, "nat-a")
    controller.wait_for_poll()
    aws.client("ec2").stop_instances(InstanceIds=[old])
    new = controller.wait_for_replacement("nat-a", old, TIMEOUT)
    assert kinds_for(events, old) == [LAUNCHED, UNHEALTHY, TERMINATE, GONE]
    assert LAUNCHED in kinds_for(events, new)
    state = aws.client("ec2").describe_instances(InstanceIds=[old])["Reservations"][0]
    assert state["Instances"][0]["State"]["Name"] == "terminated"


def test_impaired_nat_with_a_terminate_alarm_is_replaced_through_the_alarm(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)
    old = only_instance(aws, "nat-a")
    add_status_check_alarm(aws, old)
    controller.impair(old)
    controller.wait_for_replacement("nat-a", old, TIMEOUT)
    assert kinds_for(events, old) == [LAUNCHED, ALARM, TERMINATE, GONE]
    (alarm,) = aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM"


def test_impaired_nat_without_alarm_is_replaced_by_the_asg_health_check(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)
    old = only_instance(aws, "nat-a")
    controller.impair(old)
    controller.wait_for_replacement("nat-a", old, TIMEOUT)
    assert kinds_for(events, old) == [LAUNCHED, UNHEALTHY, TERMINATE, GONE]


def test_abandoned_launch_is_terminated_and_replaced(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws, hook=True)
    old = only_instance(aws, "nat-a")
    aws.client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName="nat-a",
        LifecycleHookName="launch",
        LifecycleActionResult="ABANDON",
        InstanceId=old,
    )
    new = controller.wait_for_replacement("nat-a", old, TIMEOUT)
    # As the ABANDON's own effect, not as a health check's: the Unhealthy mark that comes with it is
    # not a second reason (that race once hid the ABANDON from the dnf-abandon scenario).
    assert kinds_for(events, old)[:3] == [LAUNCHED, ABANDONED, TERMINATE]
    states = aws.client("autoscaling").describe_auto_scaling_instances(InstanceIds=[new])
    assert states["AutoScalingInstances"][0]["LifecycleState"] == "Pending:Wait"


def test_launch_left_pending_gets_the_hooks_default_result(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws, hook=True)  # DefaultResult ABANDON
    old = only_instance(aws, "nat-a")
    controller.wait_for_replacement("nat-a", old, TIMEOUT)
    assert kinds_for(events, old)[:2] == [LAUNCHED, LIFECYCLE_TIMEOUT]


def test_running_nat_is_left_alone(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)
    instance = only_instance(aws, "nat-a")
    controller.wait_for_poll()
    controller.wait_for_poll()
    assert controller.current_instances() == {"nat-a": [instance]}
    assert kinds_for(events, instance) == [LAUNCHED]
    assert controller.errors == 0


def test_a_group_in_a_lost_zone_launches_nothing_and_is_launched_again_once_the_zone_is_back(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)  # in us-east-1a
    old = only_instance(aws, "nat-a")
    controller.wait_for_poll()
    with ZONES.down("us-east-1a"):
        since = time.time()
        aws.client("ec2").terminate_instances(InstanceIds=[old])  # moto would launch the replacement here
        wait_until(
            lambda: len(ZONES.refused_since("nat-a", since)) >= 3, what="three refused launches", timeout=TIMEOUT
        )
        assert group_instances(aws, "nat-a") == []
    new = controller.wait_for_replacement("nat-a", old, TIMEOUT)
    assert LAUNCHED in kinds_for(events, new)
    assert [i["InstanceId"] for i in group_instances(aws, "nat-a")] == [new], "one launch, not one per retry"


def test_a_zone_outage_names_its_zone_and_is_not_nested() -> None:
    with pytest.raises(ValueError, match="zone must be an availability zone name"), ZONES.down(""):
        pass
    with (
        ZONES.down("us-east-1c"),
        pytest.raises(RuntimeError, match="us-east-1c is already down"),
        ZONES.down("us-east-1c"),
    ):
        pass
    assert not ZONES.refuses(["us-east-1c"]), "the zone is back after the block"


def _launch_first(aws: MotoBackend, name: str = "nat-a") -> None:
    aws.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=name,
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )


def _group(aws: MotoBackend, name: str = "nat-a") -> dict:
    return aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def _members_while(controller: AsgHealthController, old: str) -> list[list[str]]:
    """The group's membership at every poll until ``old`` has left it."""
    seen: list[list[str]] = []

    def gone() -> bool:
        members = controller.current_instances().get("nat-a", [])
        if not seen or seen[-1] != members:
            seen.append(members)
        return old not in members

    wait_until(gone, what=f"{old} leaving nat-a", timeout=TIMEOUT, interval=DELAYS.poll_interval)
    return seen


def test_stopped_nat_is_replaced_by_launching_first_under_a_maintenance_policy(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws)
    _launch_first(aws)
    old = only_instance(aws, "nat-a")
    controller.wait_for_poll()
    aws.client("ec2").stop_instances(InstanceIds=[old])
    history = _members_while(controller, old)
    assert any(old in members and len(members) == 2 for members in history), history
    assert kinds_for(events, old) == [LAUNCHED, UNHEALTHY, "replace-health", TERMINATE, GONE]
    group = _group(aws)
    assert (group["MaxSize"], group["DesiredCapacity"], len(group["Instances"])) == (1, 1, 1)


def test_instance_refresh_keeps_the_old_instance_until_the_new_one_is_in_service(
    aws: MotoBackend, controller: AsgHealthController, events: list[tuple[str, str]]
) -> None:
    make_group(aws, hook=True)
    old = only_instance(aws, "nat-a")
    autoscaling = aws.client("autoscaling")
    autoscaling.complete_lifecycle_action(
        AutoScalingGroupName="nat-a", LifecycleHookName="launch", InstanceId=old, LifecycleActionResult="CONTINUE"
    )
    controller.wait_for_poll()
    controller.start_instance_refresh("nat-a")
    controller.wait_for_poll()
    new = next(m["InstanceId"] for m in _group(aws)["Instances"] if m["InstanceId"] != old)
    controller.wait_for_poll()
    assert {m["InstanceId"]: m["LifecycleState"] for m in _group(aws)["Instances"]} == {
        old: "InService",
        new: "Pending:Wait",
    }, "the old NAT must stay until its successor is in service"
    autoscaling.complete_lifecycle_action(
        AutoScalingGroupName="nat-a", LifecycleHookName="launch", InstanceId=new, LifecycleActionResult="CONTINUE"
    )
    _members_while(controller, old)
    assert not controller.refreshing("nat-a")
    group = _group(aws)
    assert [m["InstanceId"] for m in group["Instances"]] == [new]
    assert (group["MaxSize"], group["DesiredCapacity"]) == (1, 1)
    assert kinds_for(events, old) == [LAUNCHED, "replace-refresh", TERMINATE, GONE]
