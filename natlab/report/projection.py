"""Project an emulated failover onto real AWS: a small latency model, not a measurement.

The emulator measures the boot script's own work; everything AWS does around it (noticing the
fault, launching, booting) is instant or absent there. This model keeps the measured local work and
adds published or estimated real-world figures, each as a low/high range with its source. Sums of
ranges give a best and a worst case; nothing here is a probability. See docs/latency-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .projection_sources import SOURCES
from .timeline import BOOT_SOURCE_PREFIX, STEP_PREFIX, Timeline

LABEL = "projection, not a measurement"
FAULTS = ("terminate", "stop", "status-check")
PHASES = ("detection", "launch", "boot", "script")

#: How the replacement comes to serve: a new instance from the default AL2023 image (the boot
#: installs nftables with dnf), a new instance from a baked image (nftables already there), or a
#: prepared instance started from the group's warm pool (the systemd unit serves, no user data).
PATHS: dict[str, str] = {
    "cold-default": "cold launch, default AL2023 image (dnf installs nftables)",
    "cold-baked": "cold launch, baked image (nftables installed)",
    "warm-pool": "started from the warm pool (prepared, stopped)",
}


@dataclass(frozen=True)
class Reference:
    """A published failover time to compare with: what, how long, where it says so."""

    what: str
    seconds: float
    source: str


REFERENCES = (
    Reference("seed script (2015 blog post)", 180.0, "seed"),
    Reference("fck-nat in HA mode", 300.0, "fck-nat"),
)

# Sequential API round trips each boot step makes (docs/design.md step list): the route tables are
# updated in parallel (up to 8 at a time), so they cost one round trip, not one per table.
API_ROUND_TRIPS: dict[str, int] = {
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
    path: str = "cold-default"

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
    warm_pool_start: tuple[float, float] = (1.0, 10.0)
    pending_to_running: tuple[float, float] = (5.0, 18.0)
    running_to_user_data: tuple[float, float] = (17.0, 30.0)
    running_to_unit: tuple[float, float] = (10.0, 23.0)
    api_latency: tuple[float, float] = (0.05, 0.3)
    local_work_factor: tuple[float, float] = (1.0, 2.0)
    package_install: tuple[float, float] = (15.0, 60.0)
    route_propagation: tuple[float, float] = (0.0, 2.0)


@dataclass(frozen=True)
class ScriptMeasurement:
    """The boot script as measured on the emulator: seconds per step, and its sequential API round trips.

    The lab's own API calls (signed curl to the emulator on loopback) take milliseconds and stay in
    the measured work; the projection adds the in-region round trip AWS would take for each.
    """

    steps: Mapping[str, float]
    api_round_trips: int
    failed_steps: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return sum(self.steps.values())

    @property
    def local_work(self) -> float:
        """What the script measured itself: its steps, the lab's API calls included."""
        return self.total

    @classmethod
    def from_steps(cls, steps: Mapping[str, float], elastic_ip: bool = True) -> ScriptMeasurement:
        """Round trips from `API_ROUND_TRIPS` for the steps that ran (none for the Elastic IP without one)."""
        trips = sum(API_ROUND_TRIPS.get(step, 0) for step in steps if elastic_ip or step != "elastic-ip")
        return cls(steps=dict(steps), api_round_trips=trips)

    @classmethod
    def from_timeline(
        cls, timeline: Timeline, instance_id: str | None = None, elastic_ip: bool = True
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
        measured = cls.from_steps(steps, elastic_ip=elastic_ip)
        return cls(steps=measured.steps, api_round_trips=measured.api_round_trips, failed_steps=failed)


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


def _launch(path: str, a: Assumptions) -> tuple[Figure, ...]:
    if path == "warm-pool":
        return (Figure("Auto Scaling takes a warm instance and starts it", *a.warm_pool_start, "asg-warm-pool"),)
    return (Figure("Auto Scaling activity to RunInstances accepted", *a.asg_launch, "asg-replace"),)


def _boot(path: str, a: Assumptions) -> tuple[Figure, ...]:
    running = Figure("pending to running", *a.pending_to_running, "boot-bench")
    if path == "warm-pool":
        return (
            running,
            Figure("running to the NAT's systemd unit (no first-boot work)", *a.running_to_unit, "estimate"),
        )
    return (
        running,
        Figure("running to user data (sshd listening as the proxy)", *a.running_to_user_data, "boot-bench"),
    )


def _script(m: ScriptMeasurement, path: str, a: Assumptions) -> tuple[Figure, ...]:
    lo, hi = a.local_work_factor
    figures = [
        Figure(
            f"script's own work ({m.local_work:.2f} s measured, x{lo:g}-x{hi:g} on a small instance)",
            m.local_work * lo,
            m.local_work * hi,
            "measured",
        ),
        Figure(
            f"in-region API round trip x {m.api_round_trips}",
            m.api_round_trips * a.api_latency[0],
            m.api_round_trips * a.api_latency[1],
            "estimate",
        ),
    ]
    if path == "cold-default":
        figures.append(Figure("dnf install nftables on a nano (tens of seconds)", *a.package_install, "estimate"))
    figures.append(Figure("route change visible in the VPC data plane", *a.route_propagation, "estimate"))
    return tuple(figures)


def project(
    fault: str, measured: ScriptMeasurement, assumptions: Assumptions | None = None, path: str = "cold-default"
) -> Projection:
    """Best and worst case from `fault` to the route pointing at the replacement, on real AWS."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
    a = assumptions or Assumptions()
    phases = (
        Phase("detection", _detection(fault, a)),
        Phase("launch", _launch(path, a)),
        Phase("boot", _boot(path, a)),
        Phase("script", _script(measured, path, a)),
    )
    return Projection(fault=fault, phases=phases, sla_seconds=a.sla_seconds, path=path)


def project_all(
    measured: ScriptMeasurement, assumptions: Assumptions | None = None, path: str = "cold-default"
) -> list[Projection]:
    """One projection per fault type in `FAULTS`, for the path the replacement took."""
    return [project(fault, measured, assumptions, path) for fault in FAULTS]


def project_paths(fault: str, measured: ScriptMeasurement, assumptions: Assumptions | None = None) -> list[Projection]:
    """One projection per path in `PATHS`, for one fault (the README's comparison)."""
    return [project(fault, measured, assumptions, path) for path in PATHS]
