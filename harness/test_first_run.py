"""The first-run summary reads the facts and step times the real boot script logs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from natlab.lab import first_run
from natlab.module.userdata import BOOT_SCRIPT_PATH

LOG = """\
2026-11-29T10:00:00.000Z nat-boot: step=identity start
2026-11-29T10:00:00.250Z nat-boot: step=identity done
2026-11-29T10:00:00.250Z nat-boot: step=routes start
2026-11-29T10:00:01.750Z nat-boot: step=routes done
2026-11-29T10:00:01.800Z nat-boot: step=facts start
2026-11-29T10:00:01.900Z nat-boot: step=facts facts nftables-rpm=none nftables-unit=disabled boot-memory-peak-kib=262144
2026-11-29T10:00:01.950Z nat-boot: step=facts done
"""


def test_summary_lists_the_facts_and_step_times() -> None:
    run = first_run.from_log("eu-west-1a", "i-0abc", LOG, {"StateValue": "INSUFFICIENT_DATA"})
    page = first_run.render(run)
    assert run.facts == {"nftables-rpm": "none", "nftables-unit": "disabled", "boot-memory-peak-kib": "262144"}
    assert "| nftables in the image | `none` |" in page
    assert "50% of a t4g.nano" in page
    assert "| routes | 1.500 | done  |" in page
    assert "`INSUFFICIENT_DATA`" in page
    assert "Not in the boot log" not in page


def test_summary_says_whether_the_boot_installed_nftables() -> None:
    assert "| dnf install at boot | `no` |" in first_run.render(first_run.from_log("z", "i-0abc", LOG, None))
    install = (
        "2026-11-29T10:00:00.250Z nat-boot: step=install start\n"
        "2026-11-29T10:00:00.750Z nat-boot: step=install nftables installed\n"
        "2026-11-29T10:00:31.250Z nat-boot: step=install done\n"
    )
    routes = "2026-11-29T10:00:00.250Z nat-boot: step=routes start\n"
    page = first_run.render(first_run.from_log("z", "i-0abc", LOG.replace(routes, install + routes), None))
    assert "| dnf install at boot | `done in 31.0 s` |" in page


def test_summary_says_which_facts_a_boot_never_logged() -> None:
    run = first_run.from_log("eu-west-1a", "i-0abc", LOG.split("2026-11-29T10:00:01.800Z")[0], None)
    assert run.missing_facts == list(first_run.FACT_KEYS)
    assert "did the boot reach step `facts`?" in first_run.render(run)


def test_the_boot_scripts_own_facts_line_parses(tmp_path: Path) -> None:
    # Runs record_facts from the real script, with its log and step functions, on this machine.
    driver = tmp_path / "facts.sh"
    driver.write_text(f'source "{BOOT_SCRIPT_PATH}"\ncurrent_step=facts\nrecord_facts\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "NAT_BOOT_FUNCTIONS_ONLY": "1",  # functions only: main (and its IMDS calls) never runs
        "NAT_ZONE": "z",
        "NAT_ASG_NAME": "g",
        "NAT_ROUTE_TABLE_IDS": "rtb-1",
        "NAT_ROUTE_DESTINATION": "0.0.0.0/0",
        "NAT_SERVED_CIDRS": "10.0.0.0/16",
    }
    out = subprocess.run(["bash", str(driver)], env=env, capture_output=True, text=True, timeout=30, check=True)
    facts = first_run.facts_from_log(out.stdout)
    assert set(facts) == set(first_run.FACT_KEYS), out.stdout
