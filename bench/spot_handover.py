"""Spot handover in three zones: what an interruption costs each zone's traffic.

One lab (harness/fixtures/vpc_nat in three zones, takeover "peers") is applied once. Zone C's NAT
gets EC2's interruption notice N times in a row (natlab/lab/spot.py: the 120 s notice runs at 12 s,
then the lab terminates the NAT); its replacement boots after a modelled --boot-delay seconds. Every
zone's private workload sends 100 UDP datagrams/s throughout: datagrams lost per zone across the
handover, the termination and the give-back, and how long after the notice the routes moved.

    sudo .venv/bin/python bench/spot_handover.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from natlab.lab.open import THREE_ZONES, LabUnavailable, open_lab, vpc_nat_lab
from natlab.lab.peer_takeover import wait_for_watchers
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.lab.spot import SPOT_NOTICE_SCALE, SPOT_NOTICE_SECONDS
from natlab.lab.spot_handover import run_interruption
from natlab.report.machine import machine_description, write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "spot_handover.json"
INTERRUPTED_ZONE = THREE_ZONES[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="interruptions to measure (default 3)")
    parser.add_argument("--boot-delay", type=float, default=30.0, help="modelled boot seconds (default 30)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = HarnessSettings(report_dir=REPO / ".build" / "bench-reports")
    except SettingsError as error:
        parser.error(str(error))
    runs = []
    try:
        with open_lab(vpc_nat_lab("natbench-spot", THREE_ZONES), settings) as lab:
            if lab.vpc is None:
                print(f"data plane unavailable: {lab.dataplane_skip_reason}", file=sys.stderr)
                return 2
            for number in range(1, args.runs + 1):
                wait_for_watchers(lab)
                run = run_interruption(lab, INTERRUPTED_ZONE, args.boot_delay)
                row = {
                    "covered_by": run.covering,
                    "notice_to_handover_s": round(run.notice_to_handover_s, 2),
                    "handed_before_termination": run.handed_before_termination,
                    "lost": {zone: run.lost(zone) for zone in lab.zones},
                    "longest_gap_s": round(run.longest_gap_s(INTERRUPTED_ZONE), 3),
                    "gaps": {zone: run.gap_report(zone) for zone in lab.zones if run.gaps[zone]},
                    "moments_after_notice_s": {
                        name: round(at - run.moments["notice"], 2) for name, at in run.moments.items()
                    },
                }
                runs.append(row)
                print(f"run {number}: {row}", flush=True)
    except LabUnavailable as error:
        print(f"lab unavailable: {error}", file=sys.stderr)
        return 2
    lost = [run["lost"][INTERRUPTED_ZONE] for run in runs]
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"bench/spot_handover.py --runs {args.runs} --boot-delay {args.boot_delay:g}",
        "load": "100 UDP datagrams/s from each zone; other helpers' test runs on the same 2 cores",
        "load_average": os.getloadavg(),
        "notice_period_s": SPOT_NOTICE_SECONDS * SPOT_NOTICE_SCALE,
        "interrupted_zone_lost_median": statistics.median(lost),
        "interrupted_zone_lost_max": max(lost),
        "notice_to_handover_median_s": statistics.median(run["notice_to_handover_s"] for run in runs),
        "runs": runs,
    }
    write_results(RESULTS, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
