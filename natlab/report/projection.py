"""Project an emulated failover onto real AWS: a small latency model, not a measurement.

The emulator measures the boot script's own work; everything AWS does around it (noticing the
fault, launching, booting) is instant or absent there. This model keeps the measured local work and
adds published or estimated real-world figures, each as a low/high range with its source. Sums of
ranges give a best and a worst case; nothing here is a probability. See docs/latency-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .timeline import BOOT_SOURCE_PREFIX, STEP_PREFIX, Timeline

LABEL = "projection, not a measurement"
FAULTS = ("terminate", "stop", "status-check")
PHASES = ("detection", "launch", "boot", "script")

SOURCES: dict[str, str] = {
    "ec2-status": "Amazon EC2 User Guide, 'Status checks for Amazon EC2 instances' "
    "(docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-system-instance-status-check.html): "
    "status checks are performed every minute.",
    "asg-impaired": "Amazon EC2 Auto Scaling User Guide, 'Health checks for instances in an Auto "
    "Scaling group' (docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html): "
    "for impaired status checks the group 'waits a few minutes for AWS to fix the problem' before "
    "marking the instance unhealthy; 'a few minutes' is read as 2-5 min (estimate).",
    "asg-maintenance": "Amazon EC2 Auto Scaling User Guide, 'Instance maintenance policies': with "
    "min 100 % / max 200 % healthy, a replacement is launched before the unhealthy instance is "
    "terminated, so termination adds no wait.",
    "asg-health": "Amazon EC2 Auto Scaling User Guide, 'Health checks for instances in an Auto "
    "Scaling group' (docs.aws.amazon.com/autoscaling/ec2/userguide/healthcheck.html): an instance "
    "that terminates unexpectedly, or is in a state other than running, is replaced; no detection "
    "delay is published, so the range is an estimate.",
    "asg-replace": "Amazon EC2 Auto Scaling User Guide, 'View the reason for health check "
    "failures' (docs.aws.amazon.com/autoscaling/ec2/userguide/replace-unhealthy-instance.html): "
    "while the unhealthy instance terminates, another scaling activity launches its replacement.",
    "boot-bench": "Public EC2 boot benchmarks: brevdev/ec2-coldboot-research on GitHub (cold "
    "launch to SSH 25.8 s on average, 22.6-23.3 s across instance types), Colin Percival, "
    "'EC2 boot time benchmarking' (daemonology.net, 2021: RunInstances call 1.5 s, pending to "
    "running 4.9 s, then ~17 s to a listening sshd), Marty Sweet, 'EC2 Launch Times' "
    "(martysweet.co.uk, October 2023: Amazon Linux 2023 is the fastest general-purpose AMI to "
    "boot; EBS encryption slows launches). Commonly ~26-29 s to user data on Amazon Linux 2023.",
    "measured": "Measured by this harness on the emulator (the boot script's step times).",
    "facts": "Anchored on a measurement on the harness machine (shared FACTS: one aws CLI call "
    "costs ~0.77 s against the emulator, almost all of it interpreter start-up); the range for a "
    "small instance around it is an estimate.",
    "estimate": "Engineering estimate; no published figure found. Replace with a measurement "
    "from a real-AWS run when one exists.",
}

# aws CLI calls each boot step makes when it has something to do (docs/design.md step list).
# A step that ran faster than half an emulated call made none (e.g. no Elastic IP configured).
DEFAULT_AWS_CALLS: dict[str, int] = {
    "identity": 0,
    "forwarding": 0,
    "masquerade": 0,
    "source-dest-check": 1,
    "elastic-ip": 2,  # where it was (to hand it back on failure), then associate
    "routes": 1,
    "lifecycle": 1,
}


@dataclass(frozen=True)
class Figure:
    """One contribution to a phase, in seconds, with where the number comes from."""

    what: str
    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"figure {self.what!r}: need 0 <= low <= high, got {self.low}, {self.high}")
        if self.source not in SOURCES:
            raise ValueError(f"figure {self.what!r}: unknown source {self.source!r}")


@dataclass(frozen=True)
class Phase:
    """Detection, launch, boot or script: the sum of its figures."""

    name: str
    figures: tuple[Figure, ...]

    @property
    def low(self) -> float:
        return sum(f.low for f in self.figures)

    @property
    def high(self) -> float:
        return sum(f.high for f in self.figures)


@dataclass(frozen=True)
class Projection:
    """Fault to route switched on real AWS, for one fault type: a best and a worst case."""

    fault: str
    phases: tuple[Phase, ...]
    sla_seconds: float

    @property
    def low(self) -> float:
        return sum(p.low for p in self.phases)

    @property
    def high(self) -> float:
        return sum(p.high for p in self.phases)

    @property
    def breaches_sla(self) -> bool:
        """True when even the best case misses the SLA."""
        return self.low > self.sla_seconds

    @property
    def verdict(self) -> str:
        if self.breaches_sla:
            return "breaches SLA"
        if self.high > self.sla_seconds:
            return "may breach SLA"
        return "within SLA"

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def sources(self) -> list[str]:
        """Source keys used, in order of first use."""
        return list(dict.fromkeys(f.source for p in self.phases for f in p.figures))


@dataclass(frozen=True)
class Assumptions:
    """The module's settings and the real-world ranges the model uses (seconds)."""

    sla_seconds: float = 180.0
    status_check_interval: float = 60.0
    asg_detect_impaired: tuple[float, float] = (120.0, 300.0)
    asg_detect_gone: tuple[float, float] = (2.0, 60.0)
    asg_detect_stopped: tuple[float, float] = (10.0, 60.0)
    asg_launch: tuple[float, float] = (1.0, 10.0)
    boot_to_user_data: tuple[float, float] = (22.0, 40.0)
    cli_start: tuple[float, float] = (0.3, 1.0)
    api_latency: tuple[float, float] = (0.1, 0.3)
    local_work_factor: tuple[float, float] = (1.0, 2.0)
    package_install: tuple[float, float] = (3.0, 15.0)
    nftables_present: bool | None = None
    route_propagation: tuple[float, float] = (0.0, 2.0)


@dataclass(frozen=True)
class ScriptMeasurement:
    """The boot script as measured on the emulator: seconds per step and aws CLI calls made."""

    steps: Mapping[str, float]
    aws_calls: int
    emulated_call_seconds: float = 0.77
    failed_steps: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return sum(self.steps.values())

    @property
    def local_work(self) -> float:
        """Measured time minus what the emulated CLI calls cost: the script's own work."""
        return max(0.0, self.total - self.aws_calls * self.emulated_call_seconds)

    @classmethod
    def from_steps(cls, steps: Mapping[str, float], emulated_call_seconds: float = 0.77) -> ScriptMeasurement:
        """Estimate the CLI calls from `DEFAULT_AWS_CALLS`, skipping steps too quick to have made one."""
        calls = sum(
            DEFAULT_AWS_CALLS.get(step, 0) for step, seconds in steps.items() if seconds >= emulated_call_seconds / 2
        )
        return cls(steps=dict(steps), aws_calls=calls, emulated_call_seconds=emulated_call_seconds)

    @classmethod
    def from_timeline(
        cls, timeline: Timeline, instance_id: str | None = None, aws_calls: int | None = None
    ) -> ScriptMeasurement:
        """The step times of one instance's boot (default: the last instance that booted)."""
        boots = [s for s in timeline.sources() if s.startswith(BOOT_SOURCE_PREFIX)]
        source = f"{BOOT_SOURCE_PREFIX}{instance_id}" if instance_id else (boots[-1] if boots else "")
        spans = [e for e in timeline.events() if e.source == source and e.name.startswith(STEP_PREFIX)]
        steps = {e.name.removeprefix(STEP_PREFIX): e.duration for e in spans}
        if "install" in steps and "masquerade" in steps:
            # The install runs inside masquerade and is the lab's modelled dnf (scaled), not measured
            # work: counted once, outside the script's own work (the projection has its own figure).
            steps["masquerade"] = max(0.0, steps["masquerade"] - steps.pop("install"))
        failed = tuple(e.name.removeprefix(STEP_PREFIX) for e in spans if e.failed)
        measured = cls.from_steps(steps)
        calls = measured.aws_calls if aws_calls is None else aws_calls
        return cls(steps=steps, aws_calls=calls, failed_steps=failed)


def _detection(fault: str, a: Assumptions) -> tuple[Figure, ...]:
    if fault == "terminate":
        return (Figure("Auto Scaling notices the instance is gone", *a.asg_detect_gone, "asg-health"),)
    if fault == "stop":
        return (
            Figure(
                "Auto Scaling health check sees a state other than running",
                *a.asg_detect_stopped,
                "asg-health",
            ),
        )
    if fault == "status-check":
        return (
            Figure(
                "first failed status check (checks run every minute)",
                0.0,
                a.status_check_interval,
                "ec2-status",
            ),
            Figure("Auto Scaling waits 'a few minutes', marks it unhealthy", *a.asg_detect_impaired, "asg-impaired"),
            Figure("replacement launched first; no termination wait", 0.0, 0.0, "asg-maintenance"),
        )
    raise ValueError(f"fault must be one of {', '.join(FAULTS)}; got {fault!r}")


def _script(m: ScriptMeasurement, a: Assumptions) -> tuple[Figure, ...]:
    lo, hi = a.local_work_factor
    figures = [
        Figure(
            f"script's own work ({m.local_work:.2f} s measured, x{lo:g}-x{hi:g} on a small instance)",
            m.local_work * lo,
            m.local_work * hi,
            "measured",
        ),
        Figure(
            f"aws CLI start-up x {m.aws_calls} calls",
            m.aws_calls * a.cli_start[0],
            m.aws_calls * a.cli_start[1],
            "facts",
        ),
        Figure(
            f"in-region API latency x {m.aws_calls} calls",
            m.aws_calls * a.api_latency[0],
            m.aws_calls * a.api_latency[1],
            "estimate",
        ),
    ]
    if a.nftables_present is not True:
        low = a.package_install[0] if a.nftables_present is False else 0.0
        figures.append(
            Figure("dnf install nftables (when missing from the AMI)", low, a.package_install[1], "estimate")
        )
    figures.append(Figure("route change visible in the VPC data plane", *a.route_propagation, "estimate"))
    return tuple(figures)


def project(fault: str, measured: ScriptMeasurement, assumptions: Assumptions | None = None) -> Projection:
    """Best and worst case from `fault` to the route pointing at the replacement, on real AWS."""
    a = assumptions or Assumptions()
    phases = (
        Phase("detection", _detection(fault, a)),
        Phase(
            "launch",
            (Figure("Auto Scaling activity to RunInstances accepted", *a.asg_launch, "asg-replace"),),
        ),
        Phase(
            "boot",
            (Figure("RunInstances to user data start (Amazon Linux 2023)", *a.boot_to_user_data, "boot-bench"),),
        ),
        Phase("script", _script(measured, a)),
    )
    return Projection(fault=fault, phases=phases, sla_seconds=a.sla_seconds)


def project_all(measured: ScriptMeasurement, assumptions: Assumptions | None = None) -> list[Projection]:
    """One projection per fault type in `FAULTS`."""
    return [project(fault, measured, assumptions) for fault in FAULTS]
