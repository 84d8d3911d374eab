"""Takeover in three zones: how long a zone is without egress when its NAT dies, and what the watchers cost.

One lab (harness/fixtures/vpc_nat in three zones, Elastic IPs, takeover "peers", the emulated
internet as probe target) is applied once. First each NAT's watcher is measured in steady state
(CPU of it and its children from /proc over --window seconds, PSS of its processes). Then zone B's
NAT is terminated N times in a row, its replacement booting after a modelled --boot-delay seconds,
while every zone's private workload sends 100 UDP datagrams/s: the outage is from the first lost
datagram to the first echo through the NAT of the zone that took the routes over.

    sudo .venv/bin/python bench/takeover_outage.py --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from natlab.lab.open import THREE_ZONES, LabUnavailable, open_lab, vpc_nat_lab
from natlab.lab.peer_takeover import (
    covering_zone,
    outage_until,
    streams_for,
    survivor_enis,
    wait_for_watchers,
    watcher_cost,
)
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.report.machine import machine_description, write_results
from natlab.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "takeover_outage.json"
FAILED_ZONE = THREE_ZONES[1]


def one_run(lab, boot_delay: float) -> dict:
    """Terminates zone B's NAT once; returns the outage and who covered it."""
    survivors = {zone: lab.current_nat(zone) for zone in lab.zones if zone != FAILED_ZONE}
    enis = survivor_enis(lab, FAILED_ZONE)
    with lab.modelled_boot_delay(boot_delay), lab.watching_closely(), contextlib.ExitStack() as stack:
        streams = streams_for(lab, list(lab.zones), stack, rate=100, duration=180)
        fault_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[lab.current_nat(FAILED_ZONE)])
        covering = wait_until(
            lambda: covering_zone(lab, FAILED_ZONE, enis), what="a survivor to take the routes", timeout=60
        )
        covered_at = time.monotonic()
        lab.wait_until_serving(FAILED_ZONE, timeout=lab.settings.sla)
        given_back_s = time.monotonic() - fault_at
        for stream in streams.values():
            stream.stop()
    outage = outage_until(streams[FAILED_ZONE], fault_at, covered_at)
    return {
        "outage_s": round(outage.seconds, 3),
        "lost": outage.lost,
        "covered_by": covering,
        "routes_back_on_replacement_s": round(given_back_s, 3),
        "other_zones_lost": {zone: streams[zone].result.lost for zone in survivors},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="failovers to measure (default 5)")
    parser.add_argument("--boot-delay", type=float, default=30.0, help="modelled boot seconds (default 30)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of watcher cost measurement")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = HarnessSettings(report_dir=REPO / ".build" / "bench-reports")
    except SettingsError as error:
        parser.error(str(error))
    runs, costs = [], {}
    try:
        with open_lab(vpc_nat_lab("natbench-3z", THREE_ZONES), settings) as lab:
            if lab.vpc is None:
                print(f"data plane unavailable: {lab.dataplane_skip_reason}", file=sys.stderr)
                return 2
            wait_for_watchers(lab)
            for zone in lab.zones:
                box = lab.sandbox(lab.current_nat(zone))
                cost = watcher_cost(box, args.window)
                costs[zone] = {"cpu_share": round(cost.cpu_share, 4), "pss_kib": cost.pss_kib}
                print(f"watcher {zone}: {cost.cpu_share * 100:.2f} % of one CPU, PSS {cost.pss_kib} KiB", flush=True)
            for number in range(1, args.runs + 1):
                wait_for_watchers(lab)
                run = one_run(lab, args.boot_delay)
                runs.append(run)
                print(f"run {number}: {run}", flush=True)
    except LabUnavailable as error:
        print(f"lab unavailable: {error}", file=sys.stderr)
        return 2
    outages = [run["outage_s"] for run in runs]
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"bench/takeover_outage.py --runs {args.runs} --boot-delay {args.boot_delay:g}",
        "boot_delay_s": args.boot_delay,
        "outage_median_s": statistics.median(outages),
        "outage_min_s": min(outages),
        "outage_max_s": max(outages),
        "runs": runs,
        "watcher_cost": costs,
        "load_average": os.getloadavg(),
    }
    write_results(RESULTS, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
