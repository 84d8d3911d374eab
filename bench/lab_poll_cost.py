"""What the lab's own looks at the emulator cost in CPU, with reads answered from memory and without.

One three-zone lab (harness/fixtures/vpc_nat, takeover "peers", as ``make verify`` runs it) is applied
once; with every watcher answering, the CPU time of this process (which holds moto, the fleet, the
health controller, the router's sync and the scenario's reads) is measured over windows of
``--window`` seconds: idle, and inside ``Lab.watching_closely`` (the router at 20 Hz) while a wait
loop reads the routes every 50 ms as the scenarios' waits do. Each window runs with the read cache
(:mod:`natlab.cloud.read_cache`) on and off in turn, ``--repeat`` times. The instances' own
processes (watchers, probes) are not in these figures: only this process.

    sudo .venv/bin/python bench/lab_poll_cost.py --window 15 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natlab.cloud import read_cache
from natlab.lab.lab import Lab
from natlab.lab.open import THREE_ZONES, open_lab, vpc_nat_lab
from natlab.lab.peer_takeover import wait_for_watchers
from natlab.lab.settings import HarnessSettings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "lab_poll_cost.json"


def cpu_per_second(window: float) -> float:
    wall, cpu = time.monotonic(), time.process_time()
    time.sleep(window)  # the measurement window itself
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def watched(lab: Lab, window: float) -> float:
    """CPU-s/s while watching closely and reading the routes of every zone every 50 ms."""
    stop = threading.Event()

    def scenario_reads() -> None:
        while not stop.wait(0.05):  # a scenario's wait loop, as in wait_until(interval=0.05)
            for zone in lab.zones:
                lab.route_targets(zone)

    reader = threading.Thread(target=scenario_reads, daemon=True)
    with lab.watching_closely():
        reader.start()
        try:
            return cpu_per_second(window)
        finally:
            stop.set()
            reader.join()


def measure(lab: Lab, window: float, repeat: int) -> dict[str, Any]:
    figures: dict[str, list[float]] = {}
    for _ in range(repeat):
        for cached in (True, False):
            read_cache.ENABLED = cached
            label = "cache_on" if cached else "cache_off"
            figures.setdefault(f"idle_{label}", []).append(cpu_per_second(window))
            figures.setdefault(f"watching_{label}", []).append(watched(lab, window))
    read_cache.ENABLED = True
    return {key: round(statistics.median(values), 3) for key, values in figures.items()} | {"samples": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--window", type=float, default=15.0, help="seconds per measurement window")
    parser.add_argument("--repeat", type=int, default=2, help="windows per case")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with open_lab(vpc_nat_lab("natlab-poll", THREE_ZONES), HarnessSettings()) as lab:
        wait_for_watchers(lab)
        result = measure(lab, args.window, args.repeat)
    result |= {
        "cpu_s_per_s": "CPU time of this process per wall second (moto, fleet, controller, router sync, reads)",
        "window_s": args.window,
        "repeat": args.repeat,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
