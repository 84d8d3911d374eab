"""The ASG controller replaces NAT instances the way AWS would (moto alone never does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_moto_fixes import make_group, only_instance

from natlab.cloud.asg_controller import (
    ALARM,
    GONE,
    LAUNCHED,
    LIFECYCLE_TIMEOUT,
    TERMINATE,
    UNHEALTHY,
    AsgHealthController,
    AwsDelays,
)
from natlab.cloud.backend import MotoBackend

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
    assert TERMINATE in kinds_for(events, old)
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
