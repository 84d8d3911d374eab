"""A malformed configuration stops the real boot script before it changes anything, naming the variable.

The user data is rendered as Terraform would, then one value is broken the way a hand edit or a bad
input could break it; the boot must log ``config NAME='value' is malformed: it must be ...`` and end
without a single step that changes the instance or the VPC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_image_profiles import BOOT_TIMEOUT, _port, _route_target, nat_b_sandbox, needs_netns

from natlab.cloud.dataplane_lab import CloudLab
from natlab.cloud.image import Image

CHANGING_STEPS = {"forwarding", "masquerade", "install", "persist", "source-dest-check", "elastic-ip", "routes"}

MALFORMED = {
    "route table id": ("NAT_ROUTE_TABLE_IDS", "rtb-notatable"),
    "served CIDR": ("NAT_SERVED_CIDRS", "10.0.0.0/33"),
    "no served CIDR": ("NAT_SERVED_CIDRS", ""),
    "zone": ("NAT_ZONE", "us east 1a"),
    "route destination": ("NAT_ROUTE_DESTINATION", "0.0.0.0"),
    "Elastic IP": ("NAT_EIP_ALLOCATION_ID", "eip-1"),
    "topic": ("NAT_NOTIFICATION_TOPIC_ARN", "my-topic"),
    "metrics namespace": ("NAT_METRICS_NAMESPACE", "my metrics"),
}


def with_value(user_data: str, name: str, value: str) -> str:
    lines = [f"{name}='{value}'" if line.startswith(f"{name}=") else line for line in user_data.splitlines()]
    assert lines != user_data.splitlines(), f"{name} is not in the user data any more"
    return "\n".join(lines) + "\n"


@needs_netns
@pytest.mark.parametrize("broken", MALFORMED)
def test_a_malformed_value_stops_the_boot_before_any_change(
    aws: Any, lab: CloudLab, tmp_path: Path, broken: str
) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    name, value = MALFORMED[broken]
    with nat_b_sandbox(
        lab, _port(aws), tmp_path, image=Image("baked"), edit=lambda user_data: with_value(user_data, name, value)
    ) as box:
        box.wait(timeout=BOOT_TIMEOUT)
    assert box.exit_code not in (0, None), box.describe()
    steps = box.step_times()
    assert steps["config"].status == "error", box.describe()
    assert any(note.startswith(f"config {name}='{value}' is malformed: it must be") for note in steps["config"].notes)
    assert not CHANGING_STEPS & set(steps), box.describe()
    assert _route_target(lab) == lab.eni[lab.nat_a], "no route moved"
    assert box.etc_changes() == {}, "nothing written under /etc"


@needs_netns
def test_the_rendered_configuration_passes_the_check(aws: Any, lab: CloudLab, tmp_path: Path) -> None:
    lab.route_private_to(lab.nat_a, create=True)
    with nat_b_sandbox(lab, _port(aws), tmp_path, image=Image("baked")) as box:
        box.wait(timeout=BOOT_TIMEOUT)
    assert box.step_times()["config"].status == "done", box.describe()
