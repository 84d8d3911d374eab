"""The moto fix that gives a warm pool its behaviour (registered in :data:`natlab.cloud.moto_fixes.FIXES`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult

from natlab.cloud import warm_pool
from natlab.cloud.lifecycle_actions import LIFECYCLE, LifecycleAction

logger = logging.getLogger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


def fix_warm_pool(patch: Callable[[Any, str, Any], None]) -> None:
    """Give a warm pool its behaviour (:mod:`natlab.cloud.warm_pool` says what AWS does).

    moto 5.2.5: PutWarmPool/DescribeWarmPool/DeleteWarmPool store and return the configuration
    only: no instance is ever launched into the pool, DescribeWarmPool always lists none, a launch
    into the group never takes one, DeleteWarmPool with ForceDelete terminates nothing. Worth
    reporting upstream.

    Here, with the pool's members in :data:`natlab.cloud.warm_pool.WARM` (the ASG controller's
    keeper launches and stops them): a launch into a group with a warm pool first takes its
    ``Warmed:Stopped`` members (started, moved into the group, ``Pending:Wait`` under a launch
    hook); DescribeWarmPool lists the members; CompleteLifecycleAction answers for a member in
    ``Warmed:Pending:Wait``; DeleteWarmPool terminates the members.
    """
    group_cls = asg_models.FakeAutoScalingGroup
    original_replace = group_cls.replace_autoscaling_group_instances
    original_delete = AutoScalingResponse.delete_warm_pool
    original_put = AutoScalingResponse.put_warm_pool
    original_complete = getattr(AutoScalingResponse, "complete_lifecycle_action", None)  # lifecycle_hooks' fix

    def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
        while getattr(self, "warm_pool", None) is not None and count_needed > 0:  # set after the first launch
            instance_id = warm_pool.WARM.take(self.name)
            if instance_id is None:
                break
            _move_into_group(self, instance_id, propagated_tags)
            count_needed -= 1
        if count_needed > 0:
            original_replace(self, count_needed, propagated_tags)

    def describe_warm_pool(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        configuration = self.autoscaling_backend.describe_warm_pool(group_name=name)
        ec2 = self.autoscaling_backend.ec2_backend
        instances = []
        for member in warm_pool.WARM.members(name) if configuration is not None else []:
            instance = ec2.get_instance(member.instance_id)
            instances.append(
                {
                    "InstanceId": member.instance_id,
                    "InstanceType": instance.instance_type,
                    "AvailabilityZone": instance.placement.zone,
                    "LifecycleState": member.state,
                    "HealthStatus": "Healthy",
                }
            )
        return ActionResult({"WarmPoolConfiguration": configuration, "Instances": instances})

    def put_warm_pool(self: Any) -> Any:
        result = original_put(self)
        warm_pool.WARM.note_configured(self._get_param("AutoScalingGroupName"))
        return result

    def delete_warm_pool(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        members = warm_pool.WARM.remove_group(name)
        result = original_delete(self)
        warm_pool.WARM.note_configured(name)
        if members:
            self.autoscaling_backend.ec2_backend.terminate_instances(members)
        return result

    def complete_lifecycle_action(self: Any) -> Any:
        instance_id = self._get_param("InstanceId")
        member = warm_pool.WARM.get(instance_id)
        if member is None or member.state != warm_pool.PENDING:
            if original_complete is None:
                raise NotImplementedError("CompleteLifecycleAction (moto 5.2.5 without the lifecycle_hooks fix)")
            return original_complete(self)
        group_name = self._get_param("AutoScalingGroupName")
        hook_name = self._get_param("LifecycleHookName")
        result = self._get_param("LifecycleActionResult")
        if result not in ("CONTINUE", "ABANDON"):
            raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
        if group_name != member.group or not self.autoscaling_backend.describe_lifecycle_hooks(group_name, [hook_name]):
            raise ValidationError(f"No Lifecycle Hook found with name {hook_name}")
        LIFECYCLE.record(LifecycleAction(group_name, hook_name, instance_id, result, time.time(), True))
        warm_pool.WARM.set_state(instance_id, warm_pool.PROCEED if result == "CONTINUE" else warm_pool.ABANDONED)
        return EmptyResult()

    patch(group_cls, "replace_autoscaling_group_instances", replace_autoscaling_group_instances)
    patch(AutoScalingResponse, "describe_warm_pool", describe_warm_pool)
    patch(AutoScalingResponse, "put_warm_pool", put_warm_pool)
    patch(AutoScalingResponse, "delete_warm_pool", delete_warm_pool)
    patch(AutoScalingResponse, "complete_lifecycle_action", complete_lifecycle_action)


def _move_into_group(group: Any, instance_id: str, propagated_tags: dict[str, str]) -> None:
    """A warm member leaves the pool: started, tagged and counted as the group's (hook: Pending:Wait)."""
    ec2 = group.autoscaling_backend.ec2_backend
    instance = ec2.get_instance(instance_id)
    instance.start()
    instance.autoscaling_group = group
    ec2.create_tags([instance_id], {**propagated_tags, asg_models.ASG_NAME_TAG: group.name, **group.instance_tags})
    hooks = group.autoscaling_backend.describe_lifecycle_hooks(group.name)
    held = any(h.lifecycle_transition == LAUNCHING for h in hooks)
    group.instance_states.append(
        asg_models.InstanceState(
            instance,
            lifecycle_state="Pending:Wait" if held else "InService",
            protected_from_scale_in=group.new_instances_protected_from_scale_in,
        )
    )
    logger.info("warm pool of %s: %s started and moved into the group", group.name, instance_id)
