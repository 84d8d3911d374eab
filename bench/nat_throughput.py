"""TCP throughput through a NAT namespace with nftables masquerade vs plain forwarding (iperf3).

    sudo .venv/bin/python bench/nat_throughput.py [--seconds 5] [--repeat 2]

Paths (all namespaces created here, documentation addresses only, removed at exit):

- ``masquerade`` / ``plain``: workload (10.99.1.10) -> NAT namespace -> server (198.51.100.10),
  two veths; the NAT masquerades to 198.51.100.1, or only forwards (the server routes back).
- ``vpc``: the harness's full emulated path, as in the failover tests: workload -> VPC router ->
  NAT instance namespace (masquerade) -> VPC router (IGW 1:1 NAT) -> internet (203.0.113.10),
  built from a moto VPC by ``natlab.cloud.dataplane.EmulatedVpc``.

Writes ``bench/results/nat_throughput.json`` (or ``--output FILE``), with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from natlab.cloud.netns import Namespace
from natlab.cloud.netns_links import veth_pair
from natlab.cloud.netns_sysctl import set_sysctl
from natlab.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


log = logging.getLogger("bench.nat_throughput")
RESULTS = ROOT / "bench" / "results" / "nat_throughput.json"
PREFIX = "natbench-"
MASQUERADE = (
    "table ip nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; "
    'policy accept;\n  oifname "eth1" masquerade\n }\n}\n'
)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "iperf3": subprocess.run(
            ["iperf3", "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.splitlines()[0],
    }


class IperfFailed(RuntimeError):
    """One iperf3 client run failed (refused while the server starts, or a real error)."""


def iperf(client: Namespace, server: Namespace, address: str, seconds: float) -> dict[str, Any]:
    """One bounded iperf3 TCP run from ``client`` to a one-shot server on ``address``."""
    srv = server.popen(["iperf3", "-s", "-1", "-B", address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run() -> dict[str, Any]:
        proc = client.run(["iperf3", "-c", address, "-t", str(seconds), "-J"], check=False, timeout=seconds + 20)
        out = json.loads(proc.stdout or b"{}")
        if proc.returncode != 0 or "error" in out:  # iperf3 3.12 exits 0 on refusal
            raise IperfFailed(out.get("error") or proc.stderr.decode())
        return out

    try:
        # readiness: the client connects once the server listens
        out = wait_until(run, what=f"iperf3 run to {address}", timeout=5, interval=0.1, retry_on=(IperfFailed,))
        end = out["end"]
        return {
            "bits_per_second": end["sum_received"]["bits_per_second"],
            "retransmits": end["sum_sent"].get("retransmits"),
            "cpu_sender": end["cpu_utilization_percent"]["host_total"],
            "cpu_receiver": end["cpu_utilization_percent"]["remote_total"],
        }
    finally:
        srv.kill()
        srv.wait(timeout=5)


@contextlib.contextmanager
def chain(masquerade: bool) -> Iterator[tuple[Namespace, Namespace]]:
    """workload -> nat -> server; yields (workload, server)."""
    # Own prefix: a concurrent `pytest harness` session's cleanup of natlab-* must not cut the run short.
    with (
        Namespace("wl", prefix=PREFIX) as wl,
        Namespace("nat", prefix=PREFIX) as nat,
        Namespace("srv", prefix=PREFIX) as srv,
    ):
        veth_pair(wl, "eth0", nat, "eth0")
        veth_pair(nat, "eth1", srv, "eth0")
        wl.add_address("eth0", "10.99.1.10/24")
        wl.ip("route", "add", "default", "via", "10.99.1.1")
        nat.add_address("eth0", "10.99.1.1/24")
        nat.add_address("eth1", "198.51.100.1/24")
        srv.add_address("eth0", "198.51.100.10/24")
        srv.ip("route", "add", "10.99.1.0/24", "via", "198.51.100.1")
        set_sysctl(nat, "net.ipv4.ip_forward", 1)
        if masquerade:
            nat.run(["nft", "-f", "-"], input=MASQUERADE.encode())
        yield wl, srv


def vpc_path(seconds: float) -> dict[str, Any]:
    """The failover tests' full path (moto VPC, router, NAT instance namespace, IGW NAT)."""
    from natlab.cloud.backend import MotoBackend
    from natlab.cloud.dataplane import EmulatedVpc
    from natlab.cloud.dataplane_lab import build_cloud, nat_instance

    with MotoBackend() as backend:
        lab = build_cloud(backend.client("ec2"))
        lab.route_private_to(lab.nat_a, create=True)
        with EmulatedVpc(lab.ec2, lab.vpc_id) as vpc, nat_instance(vpc, lab, lab.nat_a):
            vpc.wait_for_event(r"0\.0\.0\.0/0 → eni-")
            return iperf(vpc.workload().ns, vpc.internet.ns, "203.0.113.10", seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 -t per run (default 5)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (default 2)")
    parser.add_argument("--no-vpc", action="store_true", help="skip the full emulated-VPC path")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"result file (default {RESULTS.relative_to(ROOT)})"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 1 <= args.seconds <= 30 or not 1 <= args.repeat <= 5:
        parser.error("--seconds must be in [1, 30] and --repeat in [1, 5]")

    runs: dict[str, list[dict[str, Any]]] = {"masquerade": [], "plain": [], "vpc": []}
    for _ in range(args.repeat):  # interleaved so drift hits both variants alike
        for name, masq in (("masquerade", True), ("plain", False)):
            with chain(masq) as (wl, srv):
                runs[name].append(iperf(wl, srv, "198.51.100.10", args.seconds))
            log.info("%s: %.2f Gbit/s", name, runs[name][-1]["bits_per_second"] / 1e9)
    if not args.no_vpc:
        runs["vpc"].append(vpc_path(args.seconds))
        log.info("vpc: %.2f Gbit/s", runs["vpc"][-1]["bits_per_second"] / 1e9)

    summary = {name: round(sum(r["bits_per_second"] for r in rs) / len(rs) / 1e9, 2) for name, rs in runs.items() if rs}
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "command": " ".join(["python", "bench/nat_throughput.py", *sys.argv[1:]]),
        "seconds_per_run": args.seconds,
        "gbit_per_s_mean": summary,
        "masquerade_vs_plain": round(summary["masquerade"] / summary["plain"], 3),
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s: %s", args.output, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
