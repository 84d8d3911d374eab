"""Cold launch vs warm pool on the embedded emulator: N terminations each, same machine, same run.

Two labs (harness/fixtures/vpc_nat in one zone, Elastic IP, launch hook), one after the other:

- warm: the module's default warm pool (``warm_pool = {}`` through Terraform, so the real provider
  creates it and destroys it against moto); before each termination the pool holds one prepared,
  stopped instance, and the replacement is that instance started again (its systemd unit runs);
- cold: ``warm_pool = null``; each replacement is launched and runs its user data.

Per failover: fault -> routes on the replacement, the data-plane outage (100 UDP datagrams/s), and the
replacement's own time from its (re)start to its route step. Also the Terraform apply/plan/destroy
times of the warm lab. With --boot-delay 0 (default) no boot time is modelled: what is left is the
harness and the boot script. The emulator's dnf is a shim, so the nftables install a warm pool saves
on the default image is not in these figures (README, "Warm pool").

    sudo .venv/bin/python bench/warm_pool.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natlab.lab import warm
from natlab.lab.failover import run_failover
from natlab.lab.lab import Lab, LabConfig
from natlab.lab.open import ONE_ZONE, LabUnavailable, open_lab
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.report.machine import machine_description, write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "warm_pool.json"
ZONE = ONE_ZONE[0]


def lab_config(name: str, warm_pool: dict[str, Any] | None) -> LabConfig:
    tf_vars: dict[str, Any] = {"elastic_ip": "create", "availability_zones": list(ONE_ZONE)}
    if warm_pool is not None:  # the fixture's own default is null (tftest cannot pass a null)
        tf_vars["warm_pool"] = warm_pool
    return LabConfig("vpc_nat", name=name, tf_vars=tf_vars)


def failovers(lab: Lab, runs: int, pooled: bool) -> list[dict[str, Any]]:
    figures = []
    for number in range(1, runs + 1):
        prepared = warm.wait_for_member(lab, ZONE) if pooled else None
        result = run_failover(lab, ZONE, "terminate")
        if result.problems or (pooled and result.new_instance != prepared):
            raise RuntimeError(result.summary())
        box = lab.sandbox(result.new_instance or "")
        steps = box.step_times() if box is not None else {}
        script_to_route = None
        identity, routes = steps.get("identity"), steps.get("routes")
        if identity and routes and identity.start and routes.end:
            script_to_route = (routes.end - identity.start).total_seconds()
        figures.append(
            {
                "route_switch_s": round(result.seconds or 0.0, 3),
                "outage_s": round(result.outage_seconds or 0.0, 3),
                "script_start_to_routes_done_s": None if script_to_route is None else round(script_to_route, 3),
            }
        )
        print(f"{'warm' if pooled else 'cold'} run {number}: {figures[-1]}")
    return figures


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="failovers per lab (default 3)")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="modelled boot seconds (default 0)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = HarnessSettings(boot_delay=args.boot_delay, report_dir=REPO / ".build" / "bench-reports")
    except SettingsError as error:
        parser.error(str(error))
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"sudo .venv/bin/python bench/warm_pool.py --runs {args.runs}"
        + (f" --boot-delay {args.boot_delay}" if args.boot_delay else ""),
        "boot_delay_s": args.boot_delay,
    }
    try:
        started = time.monotonic()
        with open_lab(lab_config("natbench-warm", {}), settings) as lab:
            summary["terraform_apply_until_serving_s"] = round(time.monotonic() - started, 1)
            summary["warm"] = failovers(lab, args.runs, pooled=True)
            started = time.monotonic()
            summary["second_plan_empty"] = not lab.terraform.has_changes()
            summary["terraform_plan_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            lab.destroy()
            summary["terraform_destroy_s"] = round(time.monotonic() - started, 1)
        with open_lab(lab_config("natbench-cold", None), settings) as lab:
            summary["cold"] = failovers(lab, args.runs, pooled=False)
    except LabUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    for kind in ("warm", "cold"):
        for key in ("route_switch_s", "outage_s", "script_start_to_routes_done_s"):
            summary[f"{kind}_median_{key}"] = median(summary[kind], key)
    write_results(RESULTS, summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("warm", "cold")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
