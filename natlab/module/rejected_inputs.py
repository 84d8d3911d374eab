"""The README's list of rejected module inputs, generated from the ``rejects_*`` runs of tests/*.tftest.hcl.

Each rule of the module (variable validation, precondition, postcondition) has one ``terraform
test`` run that breaks it; the list is made from those runs, so it can only name rejections that
are really tested. It lives between `<!-- BEGIN_REJECTED_INPUTS -->` and `<!-- END_REJECTED_INPUTS -->`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

from natlab.module.hcl_values import hcl_value

BEGIN_MARKER = "<!-- BEGIN_REJECTED_INPUTS -->"
END_MARKER = "<!-- END_REJECTED_INPUTS -->"
PREFIX = "rejects_"
#: Values longer than this are named, not shown (a whole ``zones`` map would swamp the table).
SHOWN_VALUE_LENGTH = 60


@dataclass(frozen=True)
class Rejection:
    case: str
    inputs: tuple[str, ...]
    rejected_by: tuple[str, ...]
    test_file: str


def _strip(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def _expression(value: str) -> str:
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def _shown(name: str, value: Any) -> str:
    text = hcl_value(value)
    return f"{name} = {text}" if len(text) <= SHOWN_VALUE_LENGTH else f"{name} = …"


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _overridden(override: dict[str, Any]) -> str:
    """A faked data source: what the provider is made to return."""
    values = hcl_value({k: v for k, v in override.get("values", {}).items() if k != "id"})
    shown = values if len(values) <= SHOWN_VALUE_LENGTH else "…"
    return f"{_expression(override['target'])} returns {shown}"


def read_rejections(tests_dir: Path) -> list[Rejection]:
    """Every ``rejects_*`` run, in file and run order."""
    found = []
    for path in sorted(tests_dir.glob("*.tftest.hcl")):
        for run in hcl2.loads(path.read_text(encoding="utf-8")).get("run", []):
            ((quoted, body),) = run.items()
            name = _strip(quoted)
            if not name.startswith(PREFIX):
                continue
            variables = {k: v for block in body.get("variables", []) for k, v in block.items() if k != "__is_block__"}
            inputs = [_shown(k, v) for k, v in variables.items()]
            inputs += [_overridden(o) for o in body.get("override_data", [])]
            found.append(
                Rejection(
                    case=name.removeprefix(PREFIX).replace("_", " "),
                    inputs=tuple(inputs),
                    rejected_by=tuple(_expression(e) for e in body.get("expect_failures", [])),
                    test_file=f"tests/{path.name}",
                )
            )
    return found


def render_list(tests_dir: Path) -> str:
    """The Markdown between the markers (without the markers)."""
    rejections = read_rejections(tests_dir)
    lines = [
        f"{len(rejections)} rejected inputs, each stopped at `terraform plan` by the rule named, each one "
        "`terraform test` run (`make test`):",
        "",
        "| Rejected | Input tried | Stopped by | Run in |",
        "| --- | --- | --- | --- |",
    ]
    for item in rejections:
        inputs = "<br>".join(_code(text) for text in item.inputs) or "—"
        stopped = ", ".join(f"`{target}`" for target in item.rejected_by)
        lines.append(f"| {item.case} | {inputs} | {stopped} | `{item.test_file}` |")
    return "\n".join(lines) + "\n"
