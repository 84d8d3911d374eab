"""The one-page summary of a first run on a real account: what the emulator cannot show.

A lab on the emulator proves the boot script against an emulated AWS; a few things only a real
account can answer (README, "First run on a real account"): whether the image ships nftables, how
its nftables unit is set up, how much memory the boot took on a 512 MiB instance, how long each
step takes against the real API, and whether the status-check alarm as configured gets data. The
boot script logs the instance-side facts itself (step ``facts``); this module reads them, with the
step times, from the boot log (the sandbox's console here, GetConsoleOutput on AWS) and writes them
as one Markdown page per zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natlab.module import bootlog

#: The facts the boot script logs as ``facts key=value ...`` (userdata/nat-boot.sh, record_facts).
FACT_KEYS = ("nftables-rpm", "nftables-unit", "boot-memory-peak-kib")
NANO_MEMORY_KIB = 512 * 1024
_FACT = re.compile(r"(?P<key>[a-z-]+)=(?P<value>\S+)")


@dataclass(frozen=True)
class FirstRun:
    """What one zone's NAT told about its first boot."""

    zone: str
    instance_id: str
    steps: list[bootlog.BootStep]
    facts: dict[str, str]
    alarm: dict[str, Any] | None

    @property
    def missing_facts(self) -> list[str]:
        return [key for key in FACT_KEYS if key not in self.facts]


def facts_from_log(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of the boot log's ``facts`` line (the last one, if it booted twice)."""
    facts: dict[str, str] = {}
    for line in bootlog.parse(text):
        if line.step == "facts" and line.verb == "facts":
            facts = {m["key"]: m["value"] for m in _FACT.finditer(line.message)}
    return facts


def from_log(zone: str, instance_id: str, text: str, alarm: dict[str, Any] | None) -> FirstRun:
    return FirstRun(zone, instance_id, bootlog.steps(bootlog.parse(text)), facts_from_log(text), alarm)


def render(run: FirstRun) -> str:
    """One Markdown page: the checklist first, then the step times."""
    lines = [f"# First run: {run.zone} ({run.instance_id})", ""]
    lines += ["| check | seen | what it means |", "| --- | --- | --- |"]
    lines += [f"| {check} | `{seen}` | {meaning} |" for check, seen, meaning in _checklist(run)]
    lines += ["", "| step | seconds | outcome |", "| --- | ---: | --- |"]
    for step in run.steps:
        seconds = "" if step.seconds is None else f"{step.seconds:.3f}"
        lines.append(f"| {step.name} | {seconds} | {step.status} {step.message if step.status != 'done' else ''} |")
    if run.missing_facts:
        lines += ["", f"Not in the boot log: {', '.join(run.missing_facts)} (did the boot reach step `facts`?)."]
    return "\n".join(lines) + "\n"


#: What the takeover facts read when the deployment has takeover off (one zone, or "off").
TAKEOVER_OFF = "n/a (takeover off)"


def _checklist(run: FirstRun) -> list[tuple[str, str, str]]:
    rpm = run.facts.get("nftables-rpm", "?")
    peak = run.facts.get("boot-memory-peak-kib", "?")
    share = f"{int(peak) / NANO_MEMORY_KIB:.0%} of a t4g.nano" if peak.isdigit() else "not measured (no cgroup v2)"
    state = (run.alarm or {}).get("StateValue", "no alarm")
    # The facts are read after the masquerade step, so rpm finds a package the boot itself installed.
    install = next((step for step in run.steps if step.name == "install"), None)
    installed = "no" if install is None else f"{install.status} in {install.seconds or 0:.1f} s"
    return [
        ("nftables in the image", rpm, "`none`: the boot could not install it; else the package it runs"),
        ("dnf install at boot", installed, "not `no`: the image lacks nftables and dnf ran on the critical path"),
        ("nftables unit", run.facts.get("nftables-unit", "?"), "`enabled`: rules come back after a reboot"),
        ("boot memory peak (KiB)", peak, share),
        ("status-check alarm", state, "`OK` once EC2 publishes the metric per group; stays `INSUFFICIENT_DATA` if not"),
        ("VXLAN link (takeover)", run.facts.get("vxlan", TAKEOVER_OFF), "`ok`: the kernel makes the probe tunnels"),
        ("curl --parallel (takeover)", run.facts.get("curl-parallel", TAKEOVER_OFF), "`yes`: one curl, all peers"),
    ]


def write(run: FirstRun, report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"first-run-{run.zone}.md"
    path.write_text(render(run))
    return path


def collect(lab: Any, zone: str) -> FirstRun:
    """The zone's current NAT: its boot log from the emulated console, or GetConsoleOutput on AWS."""
    instance_id = lab.current_nat(zone)
    box = lab.sandbox(instance_id)
    if box is not None:
        text = box.console_log()
    else:  # a real instance: cloud-init copies the user data's output to the console
        text = lab.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
    alarm_name = lab.zones[zone].alarm_name
    alarm = None
    if alarm_name:
        alarms = lab.backend.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        alarm = alarms[0] if alarms else None
    return from_log(zone, instance_id, text, alarm)
