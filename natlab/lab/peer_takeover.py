"""Watching the NATs' takeover watchers in a lab: their logs, who covers a zone, the outage, their cost.

The scenarios (``harness/test_takeover.py``) and the benchmark (``bench/takeover_outage.py``) use
these. The watcher is the boot script in ``watch`` mode (``nat-instance-watch.service``): its log is
``/var/log/nat-instance-watch.log`` in the instance's overlay.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from natlab.cloud.probes import UdpStream
from natlab.cloud.sandbox import WATCH_LOG_FILE, InstanceSandbox
from natlab.lab.lab import Lab
from natlab.waiting import wait_until

WATCH_COMMAND = ("/usr/local/sbin/nat-instance", "watch")
#: Launch to user data start of a replacement in the scenarios: half of AWS's (~26-29 s, estimate 30 s:
#: settings/AwsDelays). The watchers run in real time and act in 3-10 s (peer dead, not forwarding),
#: so 15 s keeps AWS's order of events (the zone covered long before its replacement boots) at half
#: the wait. The benches (bench/takeover_outage.py, standby_outage.py) model the full 30 s.
REPLACEMENT_BOOT_DELAY = 15.0
#: Seconds the survivors may take to move the routes: probes (3 misses at 1 s) + the API confirm,
#: with room for a loaded 2-core machine. A wait bound, not the measured figure (bench/ has that).
TAKEOVER_WAIT = 20.0
#: A NAT that forwards nothing: every forwarded packet dropped, while it runs and passes its checks.
HUNG_RULESET = (
    "table inet natlab_hung {\n chain forward {\n type filter hook forward priority -10; policy drop;\n}\n}\n"
)
METRICS_COMMAND = ("/usr/local/sbin/nat-instance", "metrics")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def watch_log(box: InstanceSandbox) -> str:
    """The watcher's log so far (empty before it started)."""
    path = box.overlays.host_path(WATCH_LOG_FILE)
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_watchers(lab: Lab, timeout: float = 60.0) -> None:
    """Until every NAT's probes through every other zone's NAT answer: the steady state a fault meets.

    The last line a watcher logged about each other zone must be ``probes zone=<zone> answer``.
    """

    def answering(zone: str, box: InstanceSandbox) -> bool:
        lines = watch_log(box).splitlines()
        for other in lab.zones:
            if other == zone:
                continue
            about = [line for line in lines if f"zone={other} " in line or f"(zone {other})" in line]
            if not about or f"probes zone={other} answer" not in about[-1]:
                return False
        return True

    for zone in lab.zones:
        box = lab.sandbox(lab.current_nat(zone))
        assert box is not None, f"{zone}: no sandbox for its NAT"
        wait_until(lambda zone=zone, box=box: answering(zone, box) or None, what=f"probes of {zone}", timeout=timeout)


@contextlib.contextmanager
def watch_logs_on_failure(lab: Lab, instances: list[str]) -> Iterator[None]:
    """A failure inside the block carries the watchers' logs and journals (what they saw and decided)."""
    try:
        yield
    except (AssertionError, TimeoutError) as error:
        logs = []
        for instance in instances:
            box = lab.sandbox(instance)
            if box is not None:
                journal = box.overlays.host_path("/var/log/nat-instance-watch.service.journal")
                tail = journal.read_text(errors="replace")[-3000:] if journal.exists() else ""
                logs.append(f"== {instance}\n{watch_log(box)[-6000:]}\n-- journal\n{tail}")
        raise AssertionError(f"{error}\n" + "\n".join(logs)) from error


def streams_for(
    lab: Lab, zones: list[str], stack: contextlib.ExitStack, *, rate: float, duration: float
) -> dict[str, UdpStream]:
    """A running UDP echo stream from each zone's private workload, each seen answering first."""
    assert lab.vpc is not None, "these scenarios need the data plane"
    streams = {
        zone: stack.enter_context(lab.vpc.udp_stream(lab.zones[zone].private_subnet_id, rate=rate, duration=duration))
        for zone in zones
    }
    for stream in streams.values():
        stream.wait_received(10)
    return streams


def survivor_enis(lab: Lab, failed_zone: str) -> dict[str, str]:
    """Zone -> primary ENI of its current NAT, for every zone but ``failed_zone``."""
    return {zone: lab.primary_eni(lab.current_nat(zone)) for zone in lab.zones if zone != failed_zone}


def covering_zone(lab: Lab, zone: str, survivor_enis: dict[str, str]) -> str | None:
    """The surviving zone whose NAT every route of ``zone`` targets now, if any."""
    targets = set(lab.route_targets(zone).values())
    return next((other for other, eni in survivor_enis.items() if targets == {eni}), None)


def log_offsets(lab: Lab, instances: dict[str, str]) -> dict[str, int]:
    """Per zone (of ``instances``: zone -> its NAT): how long its watcher's log is now.

    The scenarios share one lab: each reads only what the watchers logged after it began.
    """
    offsets = {}
    for zone, instance in instances.items():
        box = lab.sandbox(instance)
        assert box is not None, f"{zone}: no sandbox for {instance}"
        offsets[zone] = len(watch_log(box))
    return offsets


def takeover_lines(
    lab: Lab, instances: dict[str, str], zone: str, since: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """Per zone (of ``instances``: zone -> its NAT): its watcher's takeover lines for ``zone``
    (logged after offset ``since[zone]``, see :func:`log_offsets`; the whole log without it)."""
    lines = {}
    for other, instance in instances.items():
        box = lab.sandbox(instance)
        assert box is not None, f"{other}: no sandbox for {instance}"
        text = watch_log(box)[(since or {}).get(other, 0) :]
        lines[other] = [line for line in text.splitlines() if f"takeover zone={zone} " in line]
    return lines


@dataclass(frozen=True)
class Outage:
    seconds: float
    end: float
    """Monotonic time of the first echo after the outage."""
    lost: int


def outage_until(stream: UdpStream, fault_at: float, covered_at: float) -> Outage:
    """The outage the fault caused: from the first datagram lost after ``fault_at`` to the first echo
    after the last gap that began before ``covered_at`` (when the routes were seen on the survivor),
    so a path that flickers counts as one outage, not its pieces."""
    gaps = [g for g in stream.result.gaps() if fault_at - 0.05 <= g.start < covered_at and g.end != float("inf")]
    if not gaps:
        raise AssertionError("no datagram was lost between the fault and the takeover: did the NAT fail?")
    end = max(g.end for g in gaps)
    return Outage(end - gaps[0].start, end, sum(g.lost for g in gaps))


@dataclass(frozen=True)
class WatcherCost:
    cpu_seconds: float
    """CPU of the watcher and its children (probes, API calls) over ``seconds``."""
    seconds: float
    pss_kib: int
    """Proportional set size of the watcher's long-lived processes (itself, its log's tee) at the end."""

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds


def _stat_cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime (reaped children included) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15])


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def watcher_pids(box: InstanceSandbox, command: tuple[str, ...] = WATCH_COMMAND) -> list[int]:
    """The watcher (``nat-instance watch`` under the unit's supervisor) and its long-lived children;
    ``command`` names another unit's (``METRICS_COMMAND``: the metrics loop)."""
    assert box.ns is not None
    found = []
    for pid in box.ns.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_argv = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        words = tuple(a.decode(errors="replace") for a in argv)
        if words[-2:] == command and b"supervisor" in parent_argv:
            found.append(pid)
    children = []
    for pid in box.ns.pids():
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent in found and Path(f"/proc/{pid}/comm").read_text().strip() == "tee":
            children.append(pid)
    return found + children


def watcher_cost(box: InstanceSandbox, seconds: float = 30.0, command: tuple[str, ...] = WATCH_COMMAND) -> WatcherCost:
    """CPU and memory of one NAT's watcher (or the unit running ``command``) over ``seconds`` (/proc)."""
    pids = watcher_pids(box, command)
    if not pids:
        raise AssertionError(f"no watcher process in {box.identity.instance_id}")
    before = {pid: _stat_cpu_ticks(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for a condition
    elapsed = time.monotonic() - started
    ticks = sum(_stat_cpu_ticks(pid) - before[pid] for pid in pids)
    return WatcherCost(ticks / CLOCK_TICKS, elapsed, sum(_pss_kib(pid) for pid in pids))


def hang_forwarding(box: InstanceSandbox) -> None:
    """The NAT in ``box`` keeps running and passing its checks but drops every packet it would forward."""
    assert box.ns is not None, f"{box.identity.instance_id}: no namespace to hang"
    subprocess.run([*box.ns.exec_prefix(), "nft", "-f", "-"], input=HUNG_RULESET.encode(), check=True, timeout=10)
