"""IMDS trouble during boot: down for the first seconds (the boot waits and converges), or down for
good (the boot ends on its own in bounded time, saying why, and changes nothing).

The instance's IMDS is stopped before the user data starts (a modelled boot delay leaves the time)
and, for the first case, started again ``IMDS_DOWN_FOR`` seconds later. The boot's IMDS reads retry
5 times, 1 s apart, within 2 s to connect and 5 s a request (``imds_get``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from test_image_profiles import _port, _route_target, nat_b_sandbox, needs_netns

from natlab.cloud.dataplane_lab import CloudLab
from natlab.cloud.image import Image
from natlab.cloud.imds import ImdsServer
from natlab.cloud.sandbox import InstanceSandbox

BOOT_DELAY = 0.5
IMDS_DOWN_FOR = 2.5
#: Down for good: the identity step's IMDS read gives up after 5 retries 1 s apart (~5 s), the abandon
#: path tries once more within 3 s; the bound asserted leaves room for a loaded machine.
GIVES_UP_WITHIN = 30.0


def sandbox(lab: CloudLab, aws: Any, workdir: Path) -> InstanceSandbox:
    return nat_b_sandbox(lab, _port(aws), workdir, image=Image("baked"), boot_delay=BOOT_DELAY)


@needs_netns
def test_imds_down_for_the_first_seconds_delays_the_boot_which_then_serves(
    aws: Any, lab: CloudLab, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    with sandbox(lab, aws, tmp_path) as box:
        assert box.imds is not None and box.ns is not None
        box.imds.close()
        time.sleep(IMDS_DOWN_FOR)
        box.imds = ImdsServer(box.ns, box.identity, user_data=box.user_data).start()
        box.wait(timeout=GIVES_UP_WITHIN)
    assert box.exit_code == 0, box.describe()
    assert _route_target(lab) == lab.eni[lab.nat_b], box.describe()
    took = (box.exited_at or 0) - (box.started_at or 0)
    record_fault(f"IMDS down for the first {IMDS_DOWN_FOR:g} s of the boot", "the boot waited and served", took)


@needs_netns
def test_imds_down_for_good_ends_the_boot_in_bounded_time_without_a_change(
    aws: Any, lab: CloudLab, tmp_path: Path, record_fault: Any
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    with sandbox(lab, aws, tmp_path) as box:
        assert box.imds is not None
        box.imds.close()
        box.wait(timeout=GIVES_UP_WITHIN)
    assert box.exit_code not in (0, None), box.describe()
    steps = box.step_times()
    assert steps["identity"].status == "error", box.describe()
    assert "forwarding" not in steps and _route_target(lab) == lab.eni[lab.nat_a], box.describe()
    assert "cannot abandon the launch" in box.boot_log(), box.boot_log()
    took = (box.exited_at or 0) - (box.started_at or 0)
    record_fault("IMDS down for good", "boot ended, nothing changed, reason logged", took)
