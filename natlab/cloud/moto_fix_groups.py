"""A moto fix kept apart from ``moto_fixes.py`` (which registers it) for that module's size.

See ``fix_launch_template_interface_groups``; ``moto_fixes.FIXES`` lists it with the others, so
``apply_all``, ``revert`` and ``without`` treat it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.ec2.models import instances as ec2_instances

Patch = Callable[[Any, str, Any], None]


def fix_launch_template_interface_groups(patch: Patch) -> None:
    """An instance launched from a template gets the groups of the template's network interface.

    AWS: a launch template whose ``NetworkInterfaces`` entry for device 0 lists ``Groups`` launches
    instances whose primary ENI carries those security groups (how the module's template sets them).
    moto 5.2.5: it reads only the template's top-level ``SecurityGroups``/``SecurityGroupIds``, so the
    ENI gets the VPC's default group (whose ingress is empty in moto). Worth reporting upstream.
    """
    backend_cls = ec2_instances.InstanceBackend
    original = backend_cls.run_instances

    def run_instances(
        self: Any, image_id: str, count: int, user_data: Any, security_group_names: list[str], **kwargs: Any
    ) -> Any:
        if kwargs.get("launch_template") and not security_group_names and not kwargs.get("security_group_ids"):
            data = self._get_template_from_args(kwargs["launch_template"]).data
            primary = next((n for n in data.get("NetworkInterfaces") or [] if int(n.get("DeviceIndex", 0)) == 0), {})
            if primary.get("Groups"):
                kwargs["security_group_ids"] = list(primary["Groups"])
        return original(self, image_id, count, user_data, security_group_names, **kwargs)

    patch(backend_cls, "run_instances", run_instances)


__all__ = ["fix_launch_template_interface_groups"]
