"""Measures the failover on the embedded emulator N times: route switch time and data-plane outage.

One lab (harness/fixtures/vpc_nat in one zone, Elastic IP, alarm, launch hook) is applied once; then the NAT is
terminated N times in a row, each time with a 100/s UDP stream running from the private workload.
Boot delay is zero unless --boot-delay says otherwise, so the figures are what this machine adds:
the fleet noticing the replacement, the real boot script with the real aws CLI, and the router.

    sudo .venv/bin/python bench/failover_outage.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from natlab.lab.failover import run_failover
from natlab.lab.open import ONE_ZONE, LabUnavailable, open_lab, vpc_nat_lab
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.report.machine import machine_description, write_results

REPO = Path(__file__).resolve().parent.parent


RESULTS = REPO / "bench" / "results" / "failover_outage.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="failovers to measure (default 5)")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="modelled boot seconds (default 0)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = HarnessSettings(boot_delay=args.boot_delay, report_dir=REPO / ".build" / "bench-reports")
    except SettingsError as error:  # the harness's own checks and wording
        parser.error(str(error))
    runs = []
    try:
        with open_lab(vpc_nat_lab("natbench-1z", ONE_ZONE), settings) as lab:  # the harness's own emulator
            if lab.vpc is None:
                print(f"data plane unavailable: {lab.dataplane_skip_reason}", file=sys.stderr)
                return 2
            for number in range(1, args.runs + 1):
                result = run_failover(lab, ONE_ZONE[0], "terminate")
                if result.problems:
                    print(result.summary(), file=sys.stderr)
                    return 1
                runs.append(
                    {
                        "route_switch_s": round(result.seconds or 0.0, 3),
                        "outage_s": round(result.outage_seconds or 0.0, 3),
                        "datagrams_lost": result.datagrams_lost,
                        "tcp": result.tcp_outcome,
                    }
                )
                print(
                    f"run {number}: route switched {result.seconds:.2f} s, outage {result.outage_seconds:.2f} s, "
                    f"{result.datagrams_lost} lost, established TCP {result.tcp_outcome}"
                )
    except LabUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"sudo .venv/bin/python bench/failover_outage.py --runs {args.runs}"
        + (f" --boot-delay {args.boot_delay}" if args.boot_delay else ""),
        "boot_delay_s": args.boot_delay,
        "median_route_switch_s": round(statistics.median(r["route_switch_s"] for r in runs), 3),
        "median_outage_s": round(statistics.median(r["outage_s"] for r in runs), 3),
        "runs": runs,
    }
    write_results(RESULTS, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
