"""Generates the README's inputs and outputs tables from variables.tf and outputs.tf (and its rejected-inputs list).

The tables live between `<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->` in README.md. This
module is the only writer of that block (`python -m natlab.module.readme_tables --write`), and
tests/test_readme_tables.py fails when the README has drifted from the HCL.

Variables and outputs are listed in file order, which groups them the way variables.tf does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

from natlab.module import rejected_inputs
from natlab.module.hcl_values import hcl_value, unquote

REPO_ROOT = Path(__file__).resolve().parents[2]
BEGIN_MARKER = "<!-- BEGIN_TF_DOCS -->"
END_MARKER = "<!-- END_TF_DOCS -->"

log = logging.getLogger("natlab.module.readme_tables")


@dataclass(frozen=True)
class Input:
    name: str
    description: str
    type: str
    default: str | None  # rendered HCL; None when the input is required
    required: bool


@dataclass(frozen=True)
class Output:
    name: str
    description: str


def _expression(value: str) -> str:
    """python-hcl2 wraps expressions as '${...}'; the table shows the bare HCL."""
    if value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def _blocks(path: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    return [(unquote(name), body) for block in parsed.get(kind, []) for name, body in block.items()]


def read_inputs(module_dir: Path = REPO_ROOT) -> list[Input]:
    inputs = []
    for name, body in _blocks(module_dir / "variables.tf", "variable"):
        has_default = "default" in body
        inputs.append(
            Input(
                name=name,
                description=unquote(body.get("description", "")),
                type=_expression(unquote(body.get("type", "any"))),
                default=hcl_value(body["default"]) if has_default else None,
                required=not has_default,
            )
        )
    return inputs


def read_outputs(module_dir: Path = REPO_ROOT) -> list[Output]:
    return [
        Output(name=name, description=unquote(body.get("description", "")))
        for name, body in _blocks(module_dir / "outputs.tf", "output")
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def render_tables(module_dir: Path = REPO_ROOT) -> str:
    """The Markdown between the markers (without the markers)."""
    lines = [
        "### Inputs",
        "",
        "| Name | Description | Type | Default | Required |",
        "| --- | --- | --- | --- | :---: |",
    ]
    for item in read_inputs(module_dir):
        default = "n/a" if item.default is None else _code(item.default)
        required = "yes" if item.required else "no"
        cells = [_code(item.name), _cell(item.description), _code(item.type), default, required]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Outputs", "", "| Name | Description |", "| --- | --- |"]
    for item in read_outputs(module_dir):
        lines.append(f"| {_code(item.name)} | {_cell(item.description)} |")
    return "\n".join(lines) + "\n"


def current_tables(readme_text: str, begin: str = BEGIN_MARKER, end: str = END_MARKER) -> str:
    """What the README holds between the markers now."""
    start = readme_text.index(begin) + len(begin)
    stop = readme_text.index(end, start)
    return readme_text[start:stop].strip("\n") + "\n"


def update_readme(readme_text: str, tables: str, begin: str = BEGIN_MARKER, end: str = END_MARKER) -> str:
    start = readme_text.index(begin) + len(begin)
    stop = readme_text.index(end, start)
    return readme_text[:start] + "\n" + tables + readme_text[stop:]


def generated_blocks(module_dir: Path) -> list[tuple[str, str, str]]:
    """(begin marker, end marker, content) of every generated block of the README."""
    rejected = rejected_inputs.render_list(module_dir / "tests")
    return [
        (BEGIN_MARKER, END_MARKER, render_tables(module_dir)),
        (rejected_inputs.BEGIN_MARKER, rejected_inputs.END_MARKER, rejected),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module-dir", type=Path, default=REPO_ROOT, help="folder with variables.tf/outputs.tf")
    parser.add_argument("--readme", type=Path, default=None, help="README to update (default: <module-dir>/README.md)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the README's tables in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when the README's tables are out of date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    blocks = generated_blocks(args.module_dir)
    readme = args.readme or args.module_dir / "README.md"
    if not (args.write or args.check):
        sys.stdout.write("\n".join(content for _, _, content in blocks))
        return 0
    text = readme.read_text(encoding="utf-8")
    if args.check:
        stale = [begin for begin, end, content in blocks if current_tables(text, begin, end) != content]
        if stale:
            log.error(
                "%s: generated blocks out of date (%s); run `python -m natlab.module.readme_tables --write`",
                readme,
                ", ".join(stale),
            )
            return 1
        log.info("%s: generated blocks are up to date", readme)
        return 0
    updated = text
    for begin, end, content in blocks:
        updated = update_readme(updated, content, begin, end)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
        log.info("%s: generated blocks rewritten", readme)
    else:
        log.info("%s: generated blocks already up to date", readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
