"""What the emulated VPC's security-group and source/dest-check following costs in CPU.

One moto VPC (``natlab.cloud.dataplane_lab``: two NATs, one attached and serving) and its
``EmulatedVpc``; for each route-sync interval (the lab's idle 0.5 s and its watching 0.05 s) the
process's CPU time (this process holds moto, the sync thread and the filter) is measured over a
window with the filter following the ENIs and over one with it switched off (``RouteSync.vpc_filter
= None``), alternated ``--repeat`` times. Also: the time ``VpcFilter.follow`` itself takes per round,
and how often it called DescribeSecurityGroups.

    sudo .venv/bin/python bench/vpc_filter_cost.py --window 8 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natlab.cloud.backend import MotoBackend
from natlab.cloud.dataplane import EmulatedVpc
from natlab.cloud.dataplane_lab import build_cloud, nat_instance
from natlab.report.machine import machine_description

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "vpc_filter_cost.json"
INTERVALS = (0.5, 0.05)


def cpu_per_second(window: float) -> float:
    wall, cpu = time.monotonic(), time.process_time()
    time.sleep(window)
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def measure(vpc: EmulatedVpc, interval: float, window: float, repeat: int) -> dict[str, Any]:
    sync, vpc_filter = vpc.sync, vpc.filter
    assert sync is not None and vpc_filter is not None
    sync.interval = interval
    follow_times: list[float] = []
    original = vpc_filter.follow

    def timed_follow(enis: Any) -> list[str]:
        started = time.perf_counter()
        try:
            return original(enis)
        finally:
            follow_times.append(time.perf_counter() - started)

    vpc_filter.follow = timed_follow  # type: ignore[method-assign]
    on, off = [], []
    fetched = vpc_filter.groups_fetched
    on_seconds = 0.0
    for _ in range(repeat):
        sync.vpc_filter = vpc_filter
        started = time.monotonic()
        on.append(cpu_per_second(window))
        on_seconds += time.monotonic() - started
        sync.vpc_filter = None
        off.append(cpu_per_second(window))
    sync.vpc_filter = vpc_filter
    vpc_filter.follow = original  # type: ignore[method-assign]
    return {
        "interval_s": interval,
        "cpu_per_s_with_filter": [round(x, 4) for x in on],
        "cpu_per_s_without_filter": [round(x, 4) for x in off],
        "median_difference": round(statistics.median(on) - statistics.median(off), 4),
        "follow_ms_median": round(statistics.median(follow_times) * 1e3, 3) if follow_times else None,
        "follow_ms_max": round(max(follow_times) * 1e3, 3) if follow_times else None,
        "follow_calls": len(follow_times),
        "describe_security_groups_per_s": round((vpc_filter.groups_fetched - fetched) / on_seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement window (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="on/off pairs per interval (default 3)")
    args = parser.parse_args()
    if not 1 <= args.window <= 120 or not 1 <= args.repeat <= 20:
        parser.error("--window must be in [1, 120] s and --repeat in [1, 20]")
    runs = []
    with MotoBackend() as backend:
        lab = build_cloud(backend.client("ec2"))
        lab.route_private_to(lab.nat_a, create=True)
        with EmulatedVpc(lab.ec2, lab.vpc_id, poll_interval=INTERVALS[0]) as vpc, nat_instance(vpc, lab, lab.nat_a):
            vpc.wait_for_event(r"0\.0\.0\.0/0 → eni-")
            assert vpc.whoami() == lab.public_ip[lab.nat_a]
            for interval in INTERVALS:
                runs.append(measure(vpc, interval, args.window, args.repeat))
                print(json.dumps(runs[-1]))
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(),
        "command": f"sudo .venv/bin/python bench/vpc_filter_cost.py --window {args.window:g} --repeat {args.repeat}",
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
