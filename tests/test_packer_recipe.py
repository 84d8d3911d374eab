"""packer/al2023-nat.pkr.hcl stays well-formed and bakes what the lab's ``baked`` profile models.

No Packer here (and no network for its plugin): ``terraform fmt`` formats any HCL read from stdin,
and python-hcl2 (already a dependency) parses it. Neither checks Packer's own schema: a real
``packer validate`` is left to whoever builds the image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from natlab.cloud.image import PROFILES

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "packer" / "al2023-nat.pkr.hcl"


def _unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def _block(parsed: dict[str, Any], kind: str, *labels: str) -> dict[str, Any]:
    """The one ``kind "label"...`` block (python-hcl2 keeps the labels quoted)."""
    (block,) = [entry for entry in parsed[kind] if f'"{labels[0]}"' in entry]
    block = block[f'"{labels[0]}"']
    for label in labels[1:]:
        block = block[f'"{label}"']
    return block


def test_recipe_is_formatted_as_terraform_fmt_formats_hcl() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH (source .build/env.sh)")
    text = RECIPE.read_text()
    formatted = subprocess.run([terraform, "fmt", "-"], input=text, capture_output=True, text=True, timeout=30)
    assert formatted.returncode == 0, f"not valid HCL:\n{formatted.stderr}"
    assert formatted.stdout == text, "run: terraform fmt - <packer/al2023-nat.pkr.hcl and keep its output"


def test_recipe_starts_from_the_modules_default_image_on_arm64_and_adds_only_nftables() -> None:
    parsed = hcl2.loads(RECIPE.read_text())
    ssm = _unquote(_block(parsed, "data", "amazon-parameterstore", "al2023_arm64")["name"])
    module_ssm = re.search(r'name = "(/aws/service/ami-amazon-linux-latest/[^"]+)"', (REPO / "main.tf").read_text())
    assert module_ssm is not None
    assert ssm == module_ssm[1].replace("${local.architecture}", "arm64"), "same source as the module's default"
    source = _block(parsed, "source", "amazon-ebs", "al2023_nat")
    assert source["source_ami"] == "${data.amazon-parameterstore.al2023_arm64.value}"
    assert source["metadata_options"][0]["http_tokens"] == '"required"'
    (build,) = parsed["build"]
    (provisioner,) = build["provisioner"]
    commands = [_unquote(line) for line in provisioner['"shell"']["inline"]]
    installs = [line.split() for line in commands if " install " in line]
    assert installs == [["sudo", "dnf", "install", "-y", "--setopt=install_weak_deps=False", "nftables"]]
    baked = set(PROFILES["baked"].packages) - set(PROFILES["al2023"].packages)
    assert baked == {installs[0][-1]}, "the lab's baked profile is this recipe's image"
