"""The moto fix that lets the lab see a reboot (registered in :data:`natlab.cloud.moto_fixes.FIXES`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import instances as ec2_instances

from natlab.cloud.reboots import REBOOTS


class IncorrectInstanceState(EC2ClientError):
    """EC2's answer to a reboot of an instance that is not running."""

    def __init__(self, instance_id: str, state: str) -> None:
        super().__init__(
            "IncorrectInstanceState", f"The instance '{instance_id}' is not in a state from which it can be rebooted."
        )
        self.state = state


def fix_reboot_instances(patch: Callable[[Any, str, Any], None]) -> None:
    """Record each reboot of a running instance; refuse one of an instance that is not running.

    AWS: RebootInstances restarts the operating system of a running instance (it stays
    ``running``, keeps its id, ENIs and volumes); for a stopped or terminated one it answers
    ``IncorrectInstanceState``. moto 5.2.5 runs no OS, so nothing changes, and it sets the state of
    any instance, a stopped one too, to ``running``. Worth reporting upstream (the state part).

    Here: a reboot of a running instance is counted in :data:`natlab.cloud.reboots.REBOOTS`, where
    the fleet sees it and reboots the instance's sandbox; any other state is refused, unchanged.
    """
    instance_cls = ec2_instances.Instance

    def reboot(self: Any) -> None:
        if self._state.name != "running":
            raise IncorrectInstanceState(self.id, self._state.name)
        REBOOTS.note(self.id)

    patch(instance_cls, "reboot", reboot)
