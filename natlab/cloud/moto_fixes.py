"""The one place where the harness patches moto 5.2.5, in-process.

Each fix is a small function that brings one moto behaviour closer to AWS. Its docstring says what
AWS does, what moto does, and that the difference is worth reporting upstream.

The fixes patch moto's classes, so they hold for the whole Python process: once applied, every moto
in it (any ``ThreadedMotoServer``, ``mock_aws``) has them; there is no "plain moto" beside a fixed
one. :class:`natlab.cloud.backend.MotoBackend` applies them all when it starts (:func:`apply_all`,
idempotent). :func:`without` takes one fix away, process-wide, for the length of a block, so a
test can show the bug is still present upstream: when such a test starts failing, upstream fixed
it and the patch can go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult
from moto.ec2.models import elastic_network_interfaces as ec2_enis
from moto.ec2.models import instances as ec2_instances
from moto.ec2.models import launch_templates, route_tables
from moto.ec2.utils import parse_user_data

from natlab.cloud.lifecycle_actions import LIFECYCLE, LifecycleAction

from .moto_fix_groups import fix_launch_template_interface_groups
from .moto_fix_reboot import fix_reboot_instances
from .moto_fix_warm_pool import fix_warm_pool
from .zone_outages import fix_zone_outages

logger = logging.getLogger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
DEFAULT_ROOT_VOLUME_GIB = 8
_STATES_WITHOUT_TRAFFIC = {"stopping", "stopped", "shutting-down", "terminated"}

# fix name -> [(owner, attribute, moto's own value or None)], for revert().
_applied: dict[str, list[tuple[Any, str, Any]]] = {}
_recording: list[tuple[Any, str, Any]] = []
_lock = threading.RLock()


def _patch(owner: Any, name: str, value: Any) -> None:
    _recording.append((owner, name, owner.__dict__.get(name)))
    setattr(owner, name, value)


# --- fixes ---------------------------------------------------------------------------------------


def fix_launch_template_version_user_data() -> None:
    """Store UserData of CreateLaunchTemplateVersion the way CreateLaunchTemplate does.

    AWS: a new launch template version is usable like the first one; the ASG launches from it.
    moto 5.2.5: CreateLaunchTemplateVersion keeps UserData as a plain str, and the next launch
    from that version trips ``assert isinstance(user_data, Base64EncodedString)``, so
    TerminateInstances on an ASG instance answers HTTP 500 and the ASG is left empty (any
    Terraform change to the user data triggers it). Worth reporting upstream.
    """
    owner = launch_templates.LaunchTemplate
    original = owner.create_version

    def create_version(self: Any, data: dict[str, Any], description: str) -> Any:
        user_data = data.get("UserData")
        if isinstance(user_data, (str, bytes)):
            data = {**data, "UserData": parse_user_data(user_data)}
        return original(self, data, description)

    _patch(owner, "create_version", create_version)


def fix_launch_template_own_tags() -> None:
    """Keep the launch template's own tags out of its launch data.

    AWS: ``CreateLaunchTemplate(TagSpecifications=[launch-template tags])`` tags the template;
    ``LaunchTemplateData.TagSpecifications`` (instance, volume, network-interface) is unchanged.
    moto 5.2.5: it appends the ``launch-template`` entry to the launch data, so Terraform sees a
    fourth tag_specifications block and every plan after apply wants to update the template (and
    with it the ASG): the "second plan is empty" check can never pass. Worth reporting upstream.
    """
    owner = launch_templates.LaunchTemplateBackend
    original = owner.create_launch_template

    def create_launch_template(
        self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: Any
    ) -> Any:
        specs = template_data.get("TagSpecifications")
        if specs:
            kept = [s for s in specs if s.get("ResourceType") != "launch-template"]
            template_data = {**template_data, "TagSpecifications": kept}
            if not kept:
                del template_data["TagSpecifications"]
        return original(self, name, description, template_data, tag_spec)

    _patch(owner, "create_launch_template", create_launch_template)


def fix_route_blackhole_and_primary_eni() -> None:
    """Routes to a dead target report ``blackhole``; the primary ENI dies with its instance.

    AWS: a route whose target ENI is gone, detached, or belongs to a stopped or terminated
    instance shows ``State: blackhole``; an instance's primary ENI created at launch has
    DeleteOnTermination=true, so it is deleted on termination and its Elastic IP association ends.
    moto 5.2.5: Route.state is always ``active``; the primary ENI is created with
    DeleteOnTermination=false, stays ``in-use`` after termination, and keeps the Elastic IP.
    Worth reporting upstream.
    """

    def state(self: Any) -> str:
        eni = self.interface
        if eni is not None:
            if eni.id not in self.route_table.ec2_backend.enis or eni.instance is None:
                return "blackhole"
            if eni.instance.state in _STATES_WITHOUT_TRAFFIC:
                return "blackhole"
        if self.instance is not None and self.instance.state in _STATES_WITHOUT_TRAFFIC:
            return "blackhole"
        return "active"

    _patch(route_tables.Route, "state", property(state))

    instance_cls = ec2_instances.Instance
    original_prep = instance_cls.prep_nics
    original_terminate = instance_cls.terminate

    def prep_nics(self: Any, nic_spec: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        spec_by_index = {int(n.get("DeviceIndex", 0)): n for n in nic_spec}
        original_prep(self, nic_spec, *args, **kwargs)
        for index, eni in self.nics.items():
            spec = spec_by_index.get(index, {})
            if spec.get("NetworkInterfaceId"):
                continue  # an existing ENI attached at launch keeps its own setting
            if str(spec.get("DeleteOnTermination", "true")).lower() != "false":
                eni.delete_on_termination = True

    def terminate(self: Any) -> Any:
        doomed = [eni for eni in self.nics.values() if eni.delete_on_termination]
        previous = original_terminate(self)
        for address in self.ec2_backend.addresses:
            if address.eni is not None and address.eni in doomed:
                address.eni = None
                address.instance = None
                address.association_id = None
        return previous

    _patch(instance_cls, "prep_nics", prep_nics)
    _patch(instance_cls, "terminate", terminate)


def fix_lifecycle_hooks() -> None:
    """Model EC2_INSTANCE_LAUNCHING hooks: Pending:Wait until CompleteLifecycleAction.

    AWS: with a launching hook an instance waits in ``Pending:Wait`` (counted towards capacity)
    until CompleteLifecycleAction; CONTINUE puts it InService, ABANDON terminates it and the ASG
    launches another. Hooks given in CreateAutoScalingGroup (LifecycleHookSpecificationList) apply
    to the very first instances.
    moto 5.2.5: hooks are stored but never hold a launch; CompleteLifecycleAction and
    RecordLifecycleActionHeartbeat raise NotImplementedError (HTTP 500);
    LifecycleHookSpecificationList is ignored. Worth reporting upstream.

    Here: launches into a group with a launching hook are ``Pending:Wait``; CONTINUE makes them
    InService; ABANDON marks them Unhealthy/``Pending:Proceed`` and is recorded in
    :data:`LIFECYCLE` — the terminate-and-replace is the ASG controller's job (it models timing).
    """
    group_cls = asg_models.FakeAutoScalingGroup
    original_replace = group_cls.replace_autoscaling_group_instances
    original_create = AutoScalingResponse.create_auto_scaling_group

    def active_instances(self: Any) -> list[Any]:
        return [
            s
            for s in self.instance_states
            if s.lifecycle_state == "InService" or s.lifecycle_state.startswith("Pending")
        ]

    def replace_autoscaling_group_instances(self: Any, *args: Any, **kwargs: Any) -> None:
        before = {s.instance.id for s in self.instance_states}
        original_replace(self, *args, **kwargs)
        hooks = self.autoscaling_backend.describe_lifecycle_hooks(self.name)
        if any(h.lifecycle_transition == LAUNCHING for h in hooks):
            for s in self.instance_states:
                if s.instance.id not in before:
                    s.lifecycle_state = "Pending:Wait"

    def create_auto_scaling_group(self: Any) -> Any:
        group_name = self._get_param("AutoScalingGroupName")
        for spec in self._get_param("LifecycleHookSpecificationList", []) or []:
            self.autoscaling_backend.create_lifecycle_hook(
                name=spec["LifecycleHookName"],
                as_name=group_name,
                transition=spec.get("LifecycleTransition"),
                timeout=int(spec["HeartbeatTimeout"]) if spec.get("HeartbeatTimeout") else None,
                result=spec.get("DefaultResult"),
            )
        return original_create(self)

    def _pending_state(self: Any, group_name: str, hook_name: str, instance_id: str) -> Any:
        backend = self.autoscaling_backend
        if not backend.describe_lifecycle_hooks(group_name, [hook_name]):
            raise ValidationError(f"No Lifecycle Hook found with name {hook_name}")
        group = backend.autoscaling_groups.get(group_name)
        for s in group.instance_states if group else []:
            if s.instance.id == instance_id and s.lifecycle_state == "Pending:Wait":
                return s
        return None

    def complete_lifecycle_action(self: Any) -> Any:
        group_name = self._get_param("AutoScalingGroupName")
        hook_name = self._get_param("LifecycleHookName")
        instance_id = self._get_param("InstanceId")
        result = self._get_param("LifecycleActionResult")
        if result not in ("CONTINUE", "ABANDON"):
            raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
        state = _pending_state(self, group_name, hook_name, instance_id)
        LIFECYCLE.record(LifecycleAction(group_name, hook_name, instance_id, result, time.time(), state is not None))
        if state is None:
            raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
        if result == "CONTINUE":
            state.lifecycle_state = "InService"
        else:
            state.lifecycle_state = "Pending:Proceed"
            state.health_status = "Unhealthy"
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self: Any) -> Any:
        instance_id = self._get_param("InstanceId")
        if (
            _pending_state(
                self,
                self._get_param("AutoScalingGroupName"),
                self._get_param("LifecycleHookName"),
                instance_id,
            )
            is None
        ):
            raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
        return EmptyResult()

    _patch(group_cls, "active_instances", active_instances)
    _patch(group_cls, "replace_autoscaling_group_instances", replace_autoscaling_group_instances)
    _patch(AutoScalingResponse, "create_auto_scaling_group", create_auto_scaling_group)
    _patch(AutoScalingResponse, "complete_lifecycle_action", complete_lifecycle_action)
    _patch(AutoScalingResponse, "record_lifecycle_action_heartbeat", record_lifecycle_action_heartbeat)


def fix_block_device_size_from_image() -> None:
    """A launch-template EBS mapping without VolumeSize takes the image's size.

    AWS: ``BlockDeviceMappings=[{DeviceName, Ebs: {VolumeType: gp3, Encrypted: true}}]`` (what the
    module's launch template sends, to encrypt the root volume) keeps the AMI snapshot's size.
    moto 5.2.5: the launch fails with MissingParameter "size/snapshot" — an ASG created by
    Terraform fails at "setting initial capacity". Here the size falls back to 8 GiB (moto's own
    default root volume; Amazon Linux 2023's is 8 GiB too). Worth reporting upstream.
    """
    instance_cls = ec2_instances.Instance
    original = instance_cls.add_block_device

    def add_block_device(
        self: Any, size: int | None, device_path: str, snapshot_id: str | None, *args: Any, **kwargs: Any
    ) -> None:
        if size is None and not snapshot_id:
            size = DEFAULT_ROOT_VOLUME_GIB
        original(self, size, device_path, snapshot_id, *args, **kwargs)

    _patch(instance_cls, "add_block_device", add_block_device)


def fix_group_parameters() -> None:
    """Keep two CreateAutoScalingGroup/UpdateAutoScalingGroup parameters moto loses.

    AWS: ``InstanceMaintenancePolicy`` (min/max healthy percentage) is stored and described back;
    ``HealthCheckGracePeriod=0`` means 0 (the API's own default). moto 5.2.5 drops the policy, and
    turns a grace period of 0 into 300 at creation (``health_check_period or 300``), so Terraform
    reads back something else and every plan after apply wants to change the group: the "second
    plan is empty" check can never pass. Worth reporting upstream. (What the policy does,
    launching before terminating, is modelled by the ASG health controller.)
    """
    owner = AutoScalingResponse

    def keeping_parameters(original: Callable[..., Any], grace_default: int | None) -> Callable[..., Any]:
        def handler(self: Any) -> Any:
            result = original(self)
            group = self.autoscaling_backend.autoscaling_groups[self._get_param("AutoScalingGroupName")]
            policy = self._get_params().get("InstanceMaintenancePolicy")
            if policy is not None:
                group.instance_maintenance_policy = {key: int(value) for key, value in policy.items()}
            grace = self._get_int_param("HealthCheckGracePeriod", grace_default)
            if grace is not None:
                group.health_check_grace_period = grace
            return result

        return handler

    # Clients (Terraform among them) leave a zero grace period out: at creation that means 0.
    _patch(owner, "create_auto_scaling_group", keeping_parameters(owner.create_auto_scaling_group, 0))
    _patch(owner, "update_auto_scaling_group", keeping_parameters(owner.update_auto_scaling_group, None))


def fix_network_interface_device_index_filter() -> None:
    """Answer DescribeNetworkInterfaces filtered on ``attachment.device-index``.

    AWS: the filter matches the device index of an attached interface (``Values=0``: primary ENIs;
    EC2 API reference, DescribeNetworkInterfaces filters). moto 5.2.5 raises
    FilterNotImplementedError (HTTP 500), so a classic NAT user data that finds its primary ENI with
    ``Name=attachment.device-index,Values=0`` (bench/seed) cannot run. Worth reporting upstream.
    """
    owner = ec2_enis.NetworkInterface
    original = owner.get_filter_value

    def get_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name == "attachment.device-index":
            return self.device_index if self.instance is not None else None
        return original(self, filter_name, method_name)

    _patch(owner, "get_filter_value", get_filter_value)


FIXES: dict[str, Callable[[], None]] = {
    "launch_template_version_user_data": fix_launch_template_version_user_data,
    "launch_template_own_tags": fix_launch_template_own_tags,
    "route_blackhole_and_primary_eni": fix_route_blackhole_and_primary_eni,
    "lifecycle_hooks": fix_lifecycle_hooks,
    "block_device_size_from_image": fix_block_device_size_from_image,
    "group_parameters": fix_group_parameters,
    "launch_template_interface_groups": lambda: fix_launch_template_interface_groups(_patch),
    "network_interface_device_index_filter": fix_network_interface_device_index_filter,
    "warm_pool": lambda: fix_warm_pool(_patch),  # after lifecycle_hooks: it wraps that fix's handlers
    "reboot_instances": lambda: fix_reboot_instances(_patch),
    "zone_outages": lambda: fix_zone_outages(_patch),  # last: a lost zone takes no launch of any kind
}


def apply_all() -> None:
    """Apply every fix once (idempotent)."""
    for name in FIXES:
        apply(name)


def apply(name: str) -> None:
    """Apply one fix from :data:`FIXES` (idempotent)."""
    with _lock:
        if name in _applied:
            return
        _recording.clear()
        FIXES[name]()
        _applied[name] = list(_recording)
        logger.debug("moto fix applied: %s", name)


def revert(name: str) -> None:
    """Undo one fix (restores moto's own attributes)."""
    with _lock:
        for owner, attribute, original in reversed(_applied.pop(name, [])):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


@contextmanager
def without(name: str) -> Iterator[None]:
    """Run a block with one fix taken away (to show the bug is still there upstream).

    Process-wide, like the fixes: every moto server and thread of the process sees moto's own
    behaviour until the block ends. The fix comes back afterwards if it was applied before. Two
    fixes may wrap the same moto method, so all fixes are taken off in reverse order and put back
    in order, never one from under another.
    """
    with _lock:
        applied = list(_applied)
        for other in reversed(applied):
            revert(other)
        for other in applied:
            if other != name:
                apply(other)
    try:
        yield
    finally:
        with _lock:
            for other in reversed(list(_applied)):
                revert(other)
            for other in applied:
                apply(other)
