"""Renders the seed user data (bench/seed/user-data.sh, a 2015 blog post's NAT script) for a lab.

Only what the post tells its readers to fill in is filled in: the region, and the route table id of
its one replace-route line. For several route tables that line is repeated once per table, run one
after another, as the author's script would grow. Nothing else changes, unless ``repair_eni_field``
asks for the one documented repair (:data:`ENI_FIELD_REPAIR`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SEED_PATH = Path(__file__).resolve().parents[2] / "bench" / "seed" / "user-data.sh"
ROUTE_LINE_MARK = "@ROUTE_TABLE_ID@"

#: The post picks its ENI id as field 5 of the CLI's text output (`cut -f5`). The CLI prints an
#: object's scalar fields in key order; DescribeNetworkInterfaces has gained `InterfaceType` (and,
#: on AWS, more) before `NetworkInterfaceId` since 2015, so field 5 is no longer the ENI id
#: (bench/seed_vs_ours.md). The smallest repair keeps the post's pipeline and asks for the field
#: the id is in now, counted from the same output: `cut -f6` in the lab.
ENI_FIELD_REPAIR = ("| cut -f5)", "| cut -f6)")


def render(region: str, route_table_ids: Sequence[str], *, repair_eni_field: bool = False) -> str:
    """The seed for ``region`` pointing ``route_table_ids`` (in order) at the instance's ENI."""
    if not region.strip():
        raise ValueError("region: a region name such as us-east-1 is required")
    if not route_table_ids:
        raise ValueError("route_table_ids: at least one route table id (rtb-...) is required")
    bad = [table for table in route_table_ids if not table.startswith("rtb-")]
    if bad:
        raise ValueError(f"route_table_ids: each must be a route table id starting with rtb-, not {bad}")
    lines = []
    for line in SEED_PATH.read_text().splitlines(keepends=True):
        if ROUTE_LINE_MARK in line and not line.startswith("#"):
            lines.extend(line.replace(ROUTE_LINE_MARK, table) for table in route_table_ids)
        else:
            lines.append(line)
    seed = "".join(lines).replace("@REGION@", region)
    if repair_eni_field:
        before, after = ENI_FIELD_REPAIR
        if before not in seed:
            raise ValueError(f"the seed no longer contains {before!r}: the ENI field repair does not apply")
        seed = seed.replace(before, after)
    return seed
