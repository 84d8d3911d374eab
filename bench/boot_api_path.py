"""The boot script's API path, measured in the one-zone lab: boot start -> routes switched, processes per boot.

One lab (harness/fixtures/vpc_nat in one zone: Elastic IP, launch hook, one private route table) on the
embedded emulator; the NAT is terminated N times in a row (no data-plane probe). For each replacement the
boot log's step times give boot start (``step=identity start``) -> routes switched (``step=routes done``).
One more replacement boots under ``strace -f`` (its timing is not used: tracing slows every fork) to
count the processes the boot starts and the programs it runs. ``--memory`` also measures the PSS of
the curl processes of 8 parallel ``aws_query`` calls held open by a loopback listener that never answers.

    sudo .venv/bin/python bench/boot_api_path.py --runs 10 [--memory] [--label after]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from natlab.cloud.sandbox import InstanceSandbox
from natlab.lab.failover import run_failover
from natlab.lab.open import ONE_ZONE, LabUnavailable, open_lab, vpc_nat_lab
from natlab.lab.settings import HarnessSettings
from natlab.module.userdata import BOOT_SCRIPT_PATH, functions_only_env
from natlab.report.machine import machine_description, write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "boot_api_path.json"
STEPS = ("identity", "forwarding", "masquerade", "source-dest-check", "elastic-ip", "routes", "lifecycle")
TRACE_LOG = "boot-execs.strace"


def traced(user_data: bytes) -> bytes:
    """The user data re-executing itself under strace (forks and execs only) into the instance dir."""
    shebang, _, rest = user_data.decode().partition("\n")
    hop = (
        '[[ -n "${NATLAB_TRACED:-}" ]] || NATLAB_TRACED=1 exec strace -f -qq -e trace=execve,clone,clone3,fork,vfork '
        f'-o "$HOME/{TRACE_LOG}" bash "$0" "$@"\n'
    )
    return f"{shebang}\n{hop}{rest}".encode()


def count_processes(trace: str) -> dict[str, object]:
    """Processes created (successful clone/fork calls) and programs run (execve), by program name."""
    forks = len(re.findall(r"(?:clone3?|v?fork)\(.*\) = \d+$", trace, flags=re.MULTILINE))
    programs = re.findall(r'execve\("([^"]+)".*\) = 0$', trace, flags=re.MULTILINE)
    by_name = collections.Counter(Path(p).name for p in programs[1:])  # [0]: the traced bash itself
    return {"processes_created": forks, "programs_run": len(programs) - 1, "by_program": dict(by_name.most_common())}


def boot_seconds(box: InstanceSandbox) -> dict[str, float]:
    """Seconds per step, and boot start -> routes switched, from the boot log."""
    steps = box.step_times()
    figures = {name: round(steps[name].seconds or 0.0, 3) for name in STEPS if name in steps}
    figures["boot_to_routes_s"] = round((steps["routes"].end - steps["identity"].start).total_seconds(), 3)
    return figures


def measure_boots(runs: int) -> tuple[list[dict[str, float]], dict[str, object]]:
    settings = HarnessSettings(report_dir=REPO / ".build" / "bench-reports")
    boots = []
    with open_lab(vpc_nat_lab("natbench-api", ONE_ZONE), settings) as lab:
        for number in range(1, runs + 1):
            result = run_failover(lab, ONE_ZONE[0], "terminate", measure_outage=False)
            box = lab.sandbox(result.new_instance or "")
            if result.problems or box is None:
                raise RuntimeError(result.summary())
            box.wait(timeout=60)
            boots.append(boot_seconds(box))
            print(f"run {number}: boot start -> routes switched {boots[-1]['boot_to_routes_s']:.3f} s", flush=True)
        with lab.sabotaged(traced):
            result = run_failover(lab, ONE_ZONE[0], "terminate", measure_outage=False)
        box = lab.sandbox(result.new_instance or "")
        if result.problems or box is None:
            raise RuntimeError(result.summary())
        box.wait(timeout=60)
        processes = count_processes((box.dir / TRACE_LOG).read_text())
        print(f"traced boot: {processes}", flush=True)
    return boots, processes


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback TCP listener that accepts and never answers; yields its port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def pss_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/<pid>/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            fields[key] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children[pid])
    return found


def measure_memory(parallel: int = 8) -> dict[str, float]:
    """PSS of the curl processes of `parallel` concurrent aws_query calls (the route fan-out)."""
    with silent_listener() as port:
        script = (
            f'source "{BOOT_SCRIPT_PATH}"; aws_region=us-east-1; load_credentials >/dev/null; '
            f"for i in $(seq {parallel}); do aws_query ec2 ReplaceRoute RouteTableId=rtb-$i & done; wait"
        )
        env = functions_only_env(
            f"http://127.0.0.1:{port}", "test", "test", AWS_MAX_ATTEMPTS="1", NAT_AWS_REQUEST_TIMEOUT="5"
        )
        proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)  # every curl is connected and waiting for an answer
            found = subprocess.run(
                ["pgrep", "-f", f"^curl .*--aws-sigv4 .*127.0.0.1:{port}$"], capture_output=True, text=True
            )
            figures = [pss_kib(int(pid)) for pid in found.stdout.split()]
            tree = [pss_kib(pid) for pid in descendants(proc.pid)]
        finally:
            proc.wait(timeout=30)
    if len(figures) != parallel:
        raise RuntimeError(f"expected {parallel} curl processes, found {len(figures)}")
    return {
        "parallel_calls": parallel,
        "curl_rss_mib_each": round(statistics.mean(r for r, _ in figures) / 1024, 2),
        "curl_pss_mib_each": round(statistics.mean(p for _, p in figures) / 1024, 2),
        "curl_pss_mib_total": round(sum(p for _, p in figures) / 1024, 2),
        "whole_fanout_pss_mib": round(sum(p for _, p in tree) / 1024, 2),
        "whole_fanout_processes": len(tree),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="failovers to time (default 10)")
    parser.add_argument("--label", default="after", help="key of this measurement in the results file")
    parser.add_argument("--memory", action="store_true", help="also measure curl PSS for 8 parallel calls")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    logging.basicConfig(level=logging.WARNING)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        boots, processes = measure_boots(args.runs)
    except LabUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    totals = [b["boot_to_routes_s"] for b in boots]
    summary: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": f"sudo .venv/bin/python bench/boot_api_path.py --runs {args.runs} --label {args.label}"
        + (" --memory" if args.memory else ""),
        "load_before": load_before,
        "load_after": Path("/proc/loadavg").read_text().split()[:3],
        "median_boot_to_routes_s": round(statistics.median(totals), 3),
        "min_max_boot_to_routes_s": [min(totals), max(totals)],
        "median_step_s": {s: round(statistics.median(b[s] for b in boots), 3) for s in STEPS if s in boots[0]},
        "processes_per_boot": processes,
        "runs": boots,
    }
    if args.memory:
        summary["memory"] = measure_memory()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = summary
    write_results(RESULTS, results)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
