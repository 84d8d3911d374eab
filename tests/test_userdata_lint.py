"""Every rendering of the user data passes shellcheck and shfmt with zero findings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from userdata_cases import cases

from natlab.module.userdata import BOOT_SCRIPT_PATH, TEMPLATE_PATH, render

BIN = Path(sys.executable).parent
RENDERINGS = [(name, zone["zone"], zone) for name, zones in cases().items() for zone in zones]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} not installed: run scripts/bootstrap.sh (it comes from requirements.txt)"
    return path


@pytest.mark.parametrize(("case", "zone", "config"), RENDERINGS, ids=[f"{c}-{z}" for c, z, _ in RENDERINGS])
def test_rendered_user_data_passes_shellcheck_and_shfmt(tmp_path: Path, case: str, zone: str, config: dict):
    script = tmp_path / "user-data.sh"
    script.write_text(render(**config))
    checked = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, f"shellcheck findings in the {case} rendering:\n{checked.stdout}"
    formatted = subprocess.run(
        [_tool("shfmt"), "-i", "2", "-ci", "-d", str(script)], capture_output=True, text=True, timeout=60
    )
    assert formatted.returncode == 0, f"shfmt would reformat the {case} rendering:\n{formatted.stdout}"


def test_boot_script_alone_passes_shellcheck():
    checked = subprocess.run(
        [_tool("shellcheck"), "--severity=style", str(BOOT_SCRIPT_PATH)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout


def test_template_uses_interpolations_only():
    # A `%{` directive would render differently in jinja2 than in Terraform.
    assert "%{" not in TEMPLATE_PATH.read_text()


def test_rendering_carries_the_configuration_and_the_unchanged_script():
    config = cases()["3z-eip-topic+hook"][2]
    text = render(**config)
    assert f"NAT_ROUTE_TABLE_IDS='{' '.join(config['route_table_ids'])}'" in text
    assert "NAT_SERVED_CIDRS='10.0.0.0/16 100.64.0.0/16'" in text
    assert f"NAT_EIP_ALLOCATION_ID='{config['eip_allocation_id']}'" in text
    assert BOOT_SCRIPT_PATH.read_text() in text


def test_render_refuses_an_empty_route_table_list():
    with pytest.raises(ValueError, match="route_table_ids"):
        render(zone="a", asg_name="g", route_table_ids=[], served_cidrs=["10.0.0.0/16"])


PROJECT_SCRIPTS = sorted((BOOT_SCRIPT_PATH.parents[1] / "scripts").glob("*.sh"))


@pytest.mark.parametrize("script", PROJECT_SCRIPTS, ids=[path.name for path in PROJECT_SCRIPTS])
def test_project_scripts_pass_shellcheck_and_shfmt(script: Path):
    checked = subprocess.run([_tool("shellcheck"), "--severity=style", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    formatted = subprocess.run([_tool("shfmt"), "-i", "2", "-ci", "-d", str(script)], capture_output=True, text=True)
    assert formatted.returncode == 0, f"shfmt would reformat {script.name}:\n{formatted.stdout}"
