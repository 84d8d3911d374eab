"""What the ASG controller reports: the event kinds it passes to ``on_event(kind, instance_id, t)``.

Its helpers name their own kinds beside these: ``launch_first.REPLACE`` (``replace-<reason>``) and the
``WARM_*`` kinds of ``warm_pool.py``.
"""

from __future__ import annotations

from typing import Protocol

# Event kinds passed to on_event.
LAUNCHED = "launched"  # an instance appeared in a group (the first one, or a replacement)
UNHEALTHY = "unhealthy"  # SetInstanceHealth Unhealthy
ALARM = "alarm"  # a status-check alarm went to ALARM
TERMINATE = "terminate"  # the controller asked for termination
GONE = "gone"  # an instance left its group
LIFECYCLE_TIMEOUT = "lifecycle-timeout"  # heartbeat timeout: the hook's DefaultResult applied
ABANDONED = "abandoned"  # the boot script answered ABANDON


class EventHook(Protocol):
    def __call__(self, kind: str, instance_id: str, t: float) -> None: ...
