"""natlab.module.seed_userdata: the seed is filled in with the region and route tables, nothing else."""

from __future__ import annotations

import pytest

from natlab.module import seed_userdata

TABLES = [f"rtb-{n:017x}" for n in range(1, 9)]


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_one_replace_route_line_per_table_in_order_and_nothing_else_changed() -> None:
    rendered = seed_userdata.render("eu-west-1", TABLES)
    original = _commands(seed_userdata.SEED_PATH.read_text())
    replace_lines = [line for line in _commands(rendered) if "replace-route" in line]
    assert [line.split("--route-table-id ")[1].split(" ")[0] for line in replace_lines] == TABLES
    (template_line,) = [line for line in original if "replace-route" in line]
    filled = template_line.replace("@REGION@", "eu-west-1")
    assert replace_lines == [filled.replace("@ROUTE_TABLE_ID@", table) for table in TABLES]
    others = [line for line in _commands(rendered) if "replace-route" not in line]
    assert others == [line.replace("@REGION@", "eu-west-1") for line in original if "replace-route" not in line]
    assert "@" not in "".join(_commands(rendered))


def test_the_repair_changes_only_the_field_number() -> None:
    plain = seed_userdata.render("us-east-1", TABLES[:1])
    repaired = seed_userdata.render("us-east-1", TABLES[:1], repair_eni_field=True)
    changed = [(a, b) for a, b in zip(plain.splitlines(), repaired.splitlines(), strict=True) if a != b]
    assert len(changed) == 1
    assert changed[0][0].replace("cut -f5)", "cut -f6)") == changed[0][1]


@pytest.mark.parametrize(
    ("region", "tables", "field"),
    [("", TABLES, "region"), ("us-east-1", [], "route_table_ids"), ("us-east-1", ["igw-1"], "route_table_ids")],
)
def test_bad_input_names_the_field(region: str, tables: list[str], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        seed_userdata.render(region, tables)
