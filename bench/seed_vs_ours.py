"""Our boot script against the 2015 seed script (bench/seed), in the same lab, for 1 and 8 route tables.

Each run boots one fresh instance (moto + natlab's InstanceSandbox: real user data, real aws CLI and
curl) whose route tables still point at a dead NAT, and records: boot start -> last route pointing at
the instance's ENI in the emulator, API requests the instance sent, and aws/curl processes started
(natlab/lab/takeover.py says how each is taken). Runs are interleaved (seed, ours, for each table
count, round after round) so a busy machine slows both alike. The seed runs with IMDSv1 allowed and
its one documented repair (`cut -f6`); its as-published form is run once, to record how it fails.
Ours is the module's user data rendered by natlab.module.userdata with no Elastic IP, lifecycle hook
or notification topic, none of which the seed has. Writes bench/results/seed_vs_ours.json and
bench/seed_vs_ours.md.

    sudo .venv/bin/python bench/seed_vs_ours.py --runs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import string
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natlab.cloud import netns_available
from natlab.lab.takeover import Scene, TakeoverLab, TakeoverRun, median_spread
from natlab.module import seed_userdata, userdata

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "seed_vs_ours.json"
REPORT = REPO / "bench" / "seed_vs_ours.md"
REPORT_TEMPLATE = REPO / "bench" / "seed" / "report.md.tmpl"
GOALS = {1: 0.35, 8: 0.15}  # ours / seed, boot start -> routes switched (issue 9)
SCRIPTS = ("seed", "ours")
MEASURES = {
    "switched_s": "boot start to all routes switched, s",
    "first_api_call_s": "boot start to first API request sent, s",
    "api_calls": "API requests",
    "processes": "aws + curl started",
}


def seed(scene: Scene) -> str:
    return seed_userdata.render(scene.region, scene.route_table_ids, repair_eni_field=True)


def seed_as_published(scene: Scene) -> str:
    return seed_userdata.render(scene.region, scene.route_table_ids)


def ours(scene: Scene) -> str:
    return userdata.render(
        zone=scene.zone, asg_name="natbench", route_table_ids=scene.route_table_ids, served_cidrs=[scene.vpc_cidr]
    )


RENDER: dict[str, Callable[[Scene], str]] = {"seed": seed, "ours": ours}


def run_once(lab: TakeoverLab, script: str, tables: int) -> dict[str, Any]:
    """One boot; stops the bench when the script did not do its job (a broken run measures nothing)."""
    run = lab.run(RENDER[script], script=script, tables=tables, imds_v1=script == "seed")
    if run.exit_code != 0 or run.switched_s is None or run.source_dest_check:
        raise SystemExit(
            f"{script} with {tables} tables did not take over (exit {run.exit_code}, "
            f"{run.tables_switched}/{tables} routes, source/dest check {run.source_dest_check}):\n"
            f"{run.console[-3000:]}"
        )
    return _record(run)


def _record(run: TakeoverRun) -> dict[str, Any]:
    programs = [p.split(" ", 1)[0] for p in run.processes]
    return {
        "switched_s": run.switched_s,
        "api_calls": len(run.api_calls),
        "processes": len(run.processes),
        "aws": programs.count("aws"),
        "curl": programs.count("curl"),
        "first_api_call_s": run.api_call_offsets_s[0],
        "actions": [[a, t] for a, t in zip(run.api_calls, run.api_call_offsets_s, strict=True)],
        "load_1min": round(os.getloadavg()[0], 2),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread of each measure (and of aws and curl apart) over one script's runs."""
    figures = {key: median_spread([float(r[key]) for r in runs]) for key in (*MEASURES, "aws", "curl")}
    return figures | {"actions_of_first_run": runs[0]["actions"]}


def as_published(lab: TakeoverLab) -> dict[str, Any]:
    """The seed exactly as the post gives it (only region and table filled in), once, for the record."""
    run = lab.run(seed_as_published, script="seed-as-published", tables=1, imds_v1=True)
    errors = [line.strip() for line in run.console.splitlines() if "error occurred" in line]
    return {
        "exit_code": run.exit_code,
        "tables_switched": run.tables_switched,
        "source_dest_check_still_on": run.source_dest_check,
        "errors": errors,
    }


def set_up_before_user_data(lab: TakeoverLab, runs: int = 5) -> dict[str, float]:
    """Boot process start -> the user data's first command (mounts, host name): in every figure alike."""

    def print_time(scene: Scene) -> str:
        return '#!/bin/bash\necho "$EPOCHREALTIME"\n'

    offsets = []
    for _ in range(runs):
        run = lab.run(print_time, script="clock", tables=1)
        offsets.append(float(run.console.split()[0]) - run.started_at)
    return median_spread(offsets)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"nproc {os.cpu_count()}, {model}, kernel {platform.release()}"


def ratios(summary: dict[str, Any], tables: int) -> dict[str, float]:
    """ours / seed of each measure's median."""
    ours_, seed_ = summary["ours"][str(tables)], summary["seed"][str(tables)]
    return {key: round(ours_[key]["median"] / seed_[key]["median"], 3) for key in MEASURES}


def paired_time_ratios(runs: dict[str, Any], tables: int) -> dict[str, float]:
    """ours / seed of the route switch time within each round (the two ran back to back), median and spread.

    Less sensitive than the ratio of medians to other work slowing the machine down for a while.
    """
    pairs = zip(runs["ours"][str(tables)], runs["seed"][str(tables)], strict=True)
    return median_spread([o["switched_s"] / s["switched_s"] for o, s in pairs])


def report_rows(result: dict[str, Any]) -> list[str]:
    """The report table: one row per table count and measure."""
    rows = []
    for tables in result["tables"]:
        ratio = result["ratios"][str(tables)]
        goal = GOALS.get(tables)
        for key, name in MEASURES.items():
            cells = []
            for script in SCRIPTS:
                figure = result["summary"][script][str(tables)][key]
                cells.append(_spread(figure))
            note = ""
            if key == "switched_s":
                paired = result["paired_time_ratios"][str(tables)]
                note = f"; paired by round {_spread(paired)}"
                if goal is not None:
                    note += f"; goal <= {goal}: {'met' if ratio[key] <= goal else 'not met'}"
            rows.append(f"| {tables} | {name} | {cells[0]} | {cells[1]} | {ratio[key]:.3g}{note} |")
    return rows


def _spread(figure: dict[str, float]) -> str:
    return f"{figure['median']:.3g} ({figure['min']:.3g} to {figure['max']:.3g})"


def write_report(result: dict[str, Any]) -> None:
    published = result["seed_as_published"]
    template = string.Template(REPORT_TEMPLATE.read_text())
    REPORT.write_text(
        template.substitute(
            date=result["date"],
            machine=result["machine"],
            command=result["command"],
            runs=result["runs_per_case"],
            load=f"{result['load_average_start']} at the start, {result['load_average_end']} at the end",
            wall=result["bench_wall_s"],
            table="\n".join(report_rows(result)),
            published_errors="\n".join(f"    {e}" for e in published["errors"]) or "    (none)",
            published_switched=published["tables_switched"],
            published_exit=published["exit_code"],
            set_up=_spread(result["set_up_before_user_data_s"])
            if "set_up_before_user_data_s" in result
            else "(not measured)",
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="boots per script and table count (default 10)")
    parser.add_argument("--tables", default="1,8", help="route table counts, comma-separated (default 1,8)")
    parser.add_argument("--report-only", action="store_true", help=f"rewrite {REPORT.name} from the saved results")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(RESULTS.read_text()))
        return 0
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    try:
        table_counts = sorted({int(t) for t in args.tables.split(",")})
    except ValueError:
        parser.error("--tables must be route table counts such as 1,8")
    if not all(1 <= t <= 50 for t in table_counts):
        parser.error("--tables: each count must be between 1 and 50")
    if not netns_available.namespaces_available():
        print(f"network namespaces unavailable: {netns_available.unavailable_reason()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {str(t): [] for t in table_counts} for s in SCRIPTS}
    with TakeoverLab() as lab:
        published = as_published(lab)
        set_up = set_up_before_user_data(lab)
        for number in range(1, args.runs + 1):
            for tables in table_counts:
                for script in SCRIPTS:
                    record = run_once(lab, script, tables)
                    runs[script][str(tables)].append(record)
                    print(
                        f"run {number} {script:4} {tables} tables: routes after {record['switched_s']:.2f} s, "
                        f"{record['api_calls']} API requests, {record['processes']} aws/curl"
                    )
    summary = {s: {t: summarise(r) for t, r in by_tables.items()} for s, by_tables in runs.items()}
    command = "sudo .venv/bin/python bench/seed_vs_ours.py" + (f" --runs {args.runs}" if args.runs != 10 else "")
    command += f" --tables {args.tables}" if table_counts != [1, 8] else ""
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": command,
        "runs_per_case": args.runs,
        "tables": table_counts,
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "bench_wall_s": round(time.monotonic() - started, 1),
        "goals_switched_ratio": {str(t): g for t, g in GOALS.items()},
        "ratios": {},
        "paired_time_ratios": {},
        "summary": summary,
        "seed_as_published": published,
        "set_up_before_user_data_s": set_up,
        "runs": runs,
    }
    result["ratios"] = {str(t): ratios(summary, t) for t in table_counts}
    result["paired_time_ratios"] = {str(t): paired_time_ratios(runs, t) for t in table_counts}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    write_report(result)
    headline = ("ratios", "paired_time_ratios", "bench_wall_s")
    print(json.dumps({key: result[key] for key in headline}, indent=2))
    print(f"written: {RESULTS.relative_to(REPO)}, {REPORT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
