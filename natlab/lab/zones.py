"""A lab's zones: what the module made in each availability zone, read from the fixture's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Zone:
    """What the module made for one availability zone, from the fixture's outputs."""

    name: str
    asg_name: str
    route_table_ids: list[str]
    private_subnet_id: str
    alarm_name: str | None
    eip_allocation_id: str | None


def zones_from_outputs(out: dict[str, Any]) -> dict[str, Zone]:
    """Zone name -> :class:`Zone`, from the fixture's root outputs (``terraform output -json``)."""
    return {
        zone: Zone(
            name=zone,
            asg_name=asg,
            route_table_ids=list(out["zones"][zone]["private_route_table_ids"]),
            private_subnet_id=out["zones"][zone]["private_subnet_id"],
            alarm_name=out["status_check_alarm_names"].get(zone),
            eip_allocation_id=out["elastic_ip_allocation_ids"].get(zone),
        )
        for zone, asg in out["autoscaling_group_names"].items()
    }
