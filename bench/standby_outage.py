"""One zone with a standby vs without: how long the zone is without egress when its NAT dies.

Two labs in turn (harness/fixtures/vpc_nat in one zone, Elastic IP, launch hook), each applied once:
``takeover = "standby"`` (the zone's standby covers it until the replacement boots) and
``takeover = "off"`` (the zone waits for its replacement). In each, the zone's NAT is terminated N
times in a row, the replacement booting after a modelled --boot-delay seconds, while the private
workload sends 100 UDP datagrams/s: the outage is from the first lost datagram to the first echo
after the routes moved (to the standby; without one, to the replacement). The standby's watcher is
measured first in steady state (CPU of it and its children from /proc over --window s, PSS).

    sudo .venv/bin/python bench/standby_outage.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from natlab.lab.lab import Lab, LabConfig
from natlab.lab.open import ONE_ZONE, LabUnavailable, open_lab, standby_lab_config, vpc_nat_lab
from natlab.lab.peer_takeover import outage_until, watcher_cost
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.lab.standby import standby_of, wait_for_standby
from natlab.report.machine import machine_description, write_results
from natlab.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "standby_outage.json"
ZONE = ONE_ZONE[0]


def one_run(lab: Lab, boot_delay: float, standby: bool) -> dict:
    """Terminates the zone's NAT once; returns the outage and when the replacement had the routes."""
    assert lab.vpc is not None
    cover_eni = lab.primary_eni(standby_of(lab, ZONE)) if standby else None
    with (
        lab.modelled_boot_delay(boot_delay),
        lab.watching_closely(),
        lab.vpc.udp_stream(lab.zones[ZONE].private_subnet_id, rate=100, duration=180) as stream,
    ):
        stream.wait_received(10)
        fault_at = time.monotonic()
        lab.ec2.terminate_instances(InstanceIds=[lab.current_nat(ZONE)])
        if cover_eni:
            wait_until(
                lambda: set(lab.route_targets(ZONE).values()) == {cover_eni} or None,
                what="the standby to take the routes",
                timeout=60,
            )
        covered_at = time.monotonic()  # without a standby: moved on below, when the replacement serves
        lab.wait_until_serving(ZONE, timeout=lab.settings.sla)
        replaced_s = time.monotonic() - fault_at
        if not cover_eni:
            covered_at = time.monotonic()
        stream.stop()
    outage = outage_until(stream, fault_at, covered_at)
    return {"outage_s": round(outage.seconds, 3), "lost": outage.lost, "routes_on_replacement_s": round(replaced_s, 3)}


def measure(config: LabConfig, settings: HarnessSettings, args: argparse.Namespace, standby: bool) -> dict:
    runs, cost = [], None
    with open_lab(config, settings) as lab:
        if lab.vpc is None:
            raise LabUnavailable(f"data plane unavailable: {lab.dataplane_skip_reason}")
        if standby:
            box = wait_for_standby(lab, ZONE)
            measured = watcher_cost(box, args.window)
            cost = {"cpu_share": round(measured.cpu_share, 4), "pss_kib": measured.pss_kib}
            print(
                f"standby watcher: {measured.cpu_share * 100:.2f} % of one CPU, PSS {measured.pss_kib} KiB", flush=True
            )
        for number in range(1, args.runs + 1):
            if standby:
                wait_for_standby(lab, ZONE)
            run = one_run(lab, args.boot_delay, standby)
            runs.append(run)
            print(f"{'standby' if standby else 'off'} run {number}: {run}", flush=True)
    outages = [run["outage_s"] for run in runs]
    return {
        "outage_median_s": statistics.median(outages),
        "outage_min_s": min(outages),
        "outage_max_s": max(outages),
        "runs": runs,
        "watcher_cost": cost,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="failovers to measure per mode (default 5)")
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
    load_before = os.getloadavg()
    try:
        with_standby = measure(standby_lab_config("natbench-sb", ONE_ZONE), settings, args, standby=True)
        off = vpc_nat_lab("natbench-off", ONE_ZONE)
        off = LabConfig(off.fixture, name=off.name, tf_vars=off.tf_vars | {"takeover": "off"})
        without = measure(off, settings, args, standby=False)
    except LabUnavailable as error:
        print(f"lab unavailable: {error}", file=sys.stderr)
        return 2
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"bench/standby_outage.py --runs {args.runs} --boot-delay {args.boot_delay:g}",
        "boot_delay_s": args.boot_delay,
        "standby": with_standby,
        "without_standby": without,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    write_results(RESULTS, summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("standby", "without_standby")}, indent=2))
    for mode in ("standby", "without_standby"):
        print(mode, {k: v for k, v in summary[mode].items() if k != "runs"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
