"""What the metrics loop costs on a NAT: CPU and memory of `nat-instance metrics`, read from /proc.

One lab (harness/fixtures/vpc_nat in one zone) on the embedded emulator. Its NAT is replaced by one
whose user data has metrics on (the module's `metrics_namespace`; the lab's fixture leaves it off),
so the real boot installs the nftables counter and starts the real unit (`nat-instance-metrics`,
the persisted script in `metrics` mode). While a private workload sends 100 UDP datagrams/s through
the NAT, the unit's processes are measured over --window seconds at the script's own interval
(60 s, CloudWatch's standard resolution; --interval to change it): CPU of the loop and its reaped
children (nft, cat, wc, the PutMetricData curl), and the loop's PSS while it sleeps.

    sudo .venv/bin/python bench/metrics_cost.py --window 180
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from natlab.lab.open import ONE_ZONE, LabUnavailable, open_lab, vpc_nat_lab
from natlab.lab.peer_takeover import METRICS_COMMAND, watcher_cost, watcher_pids
from natlab.lab.settings import HarnessSettings, SettingsError
from natlab.report.machine import machine_description, write_results
from natlab.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "metrics_cost.json"
NAMESPACE = "NatLab/Bench"


def with_metrics(interval: int):
    """The user data with metrics on (as `metrics_namespace` renders it) at ``interval`` seconds."""

    def transform(user_data: bytes) -> bytes:
        text = user_data.decode()
        if "NAT_METRICS_NAMESPACE=''" not in text:
            raise AssertionError("the lab's user data no longer has metrics off: this bench's edit is stale")
        text = text.replace("NAT_METRICS_NAMESPACE=''", f"NAT_METRICS_NAMESPACE='{NAMESPACE}'", 1)
        return text.replace("\n", f"\nexport NAT_METRICS_INTERVAL={interval}\n", 1).encode()

    return transform


def published_points(lab, group: str) -> dict[str, float]:
    """ForwardedPackets as the emulator's CloudWatch holds it: data points and their sum (the last 15 min)."""
    now = datetime.now(UTC)
    points = lab.backend.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="ForwardedPackets",
        Dimensions=[{"Name": "AutoScalingGroupName", "Value": group}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    return {"points": sum(p["SampleCount"] for p in points), "packets": sum(p["Sum"] for p in points)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=180.0, help="seconds measured (default 180)")
    parser.add_argument("--interval", type=int, default=60, help="the loop's interval in seconds (default 60)")
    args = parser.parse_args()
    if not 10 <= args.window <= 3600 or not 1 <= args.interval <= 600:
        parser.error("--window must be 10-3600 s and --interval 1-600 s")
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = HarnessSettings(report_dir=REPO / ".build" / "bench-reports")
    except SettingsError as error:
        parser.error(str(error))
    try:
        with open_lab(vpc_nat_lab("natbench-metrics", ONE_ZONE), settings) as lab:
            if lab.vpc is None:
                print(f"data plane unavailable: {lab.dataplane_skip_reason}", file=sys.stderr)
                return 2
            zone = ONE_ZONE[0]
            old = lab.current_nat(zone)
            with lab.sabotaged(with_metrics(args.interval)):
                lab.ec2.terminate_instances(InstanceIds=[old])
                new = wait_until(
                    lambda: next((i for i in lab.in_service(zone) if i != old), None),
                    what="the replacement with metrics on",
                    timeout=60,
                )
            lab.wait_until_serving(zone, timeout=lab.settings.sla)
            box = lab.sandbox(new)
            assert box is not None
            wait_until(lambda: watcher_pids(box, METRICS_COMMAND) or None, what="the metrics unit", timeout=60)
            with lab.vpc.udp_stream(lab.zones[zone].private_subnet_id, rate=100, duration=args.window + 30) as load:
                load.wait_received(10)
                cost = watcher_cost(box, args.window, METRICS_COMMAND)
                load.stop()
            published = box.overlays.host_path("/var/log/nat-instance-metrics.service.journal")
            journal = published.read_text(errors="replace") if published.exists() else ""
            forwarded = published_points(lab, lab.zones[zone].asg_name)
    except LabUnavailable as error:
        print(f"lab unavailable: {error}", file=sys.stderr)
        return 2
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"bench/metrics_cost.py --window {args.window:g} --interval {args.interval}",
        "load": "100 UDP datagrams/s through the NAT; other helpers' test runs on the same 2 cores",
        "load_average": os.getloadavg(),
        "interval_s": args.interval,
        "window_s": round(cost.seconds, 1),
        "cpu_seconds": round(cost.cpu_seconds, 3),
        "cpu_share": round(cost.cpu_share, 5),
        "cpu_seconds_per_publication": round(cost.cpu_seconds / max(1.0, cost.seconds / args.interval), 3),
        "pss_kib": cost.pss_kib,
        "publish_failures": journal.count("could not publish metrics"),
        "forwarded_packets_published": forwarded,
    }
    write_results(RESULTS, summary)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
