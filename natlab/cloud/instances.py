"""Emulated EC2 instances that really boot: one network namespace + IMDSv2 + relay + user data each.

``InstanceSandbox`` is one booted instance (docs/design.md, "Harness sandbox for one instance"):

* a namespace ``natlab-<run>-<instance id>`` whose ``ens5`` carries the instance's MAC and private
  IP. The data plane wires it through an ``attach(ns, ifname=, mac=, ip_cidr=)`` callback (veth to
  its subnet's bridge, default route); without one, ``ens5`` is one end of a veth pair whose peer
  sits in a per-run "detached" namespace, so the interface exists but leads nowhere;
* IMDSv2 on ``169.254.169.254:80`` and a TCP relay ``127.0.0.1:4566`` -> the emulator on the
  host's loopback, both inside that namespace;
* the user data run by ``bash`` in private mount and UTS namespaces (host name ``ip-a-b-c-d``),
  with overlays on ``/etc`` and
  ``/var/log`` (writes land in ``<instance dir>/upper/{etc,var/log}``), recording shims for
  ``systemctl``/``dnf`` first on ``PATH``, and an environment built from scratch (nothing is
  inherited from the host: ``HOME`` is the instance dir, so the ``aws`` CLI never reads ``~/.aws``).

The boot log is left where the script writes it by default (``NAT_LOG_FILE`` unset, i.e.
``/var/log/nat-instance-boot.log``): it lands in the ``/var/log`` overlay's upper dir, so the very
default path of the real script is exercised. ``NAT_LOG_FILE`` given in ``env`` is honoured:
a path under ``/var/log`` or ``/etc`` is read from the overlay, any other path as is.

``InstanceFleet`` watches the emulator and boots a sandbox for every running Auto Scaling instance,
killing it (namespace and all) when the instance is terminated or stopped.

Files of an instance dir: ``user-data`` (what runs), ``boot.sh`` (the wrapper; ``repro_command()``
prints how to run it by hand), ``console.log`` (stdout+stderr), ``shim-calls.log``, ``upper/``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from . import netns
from .imds import ImdsRequest, ImdsServer, InstanceIdentity
from .netns import Namespace
from .relay import TcpRelay

log = logging.getLogger(__name__)

SHIMS_DIR = Path(__file__).resolve().parent / "shims"
RELAY_PORT = 4566
PRIMARY_IFNAME = "ens5"
DEFAULT_LOG_FILE = "/var/log/nat-instance-boot.log"
OVERLAID = ("/etc", "/var/log")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TERMINAL_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

_LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) nat-boot: step=(?P<step>\S+)"
    r"(?: (?P<message>.*))?$"
)


class AttachFn(Protocol):
    """Gives the instance its primary interface: ``ifname`` with ``mac`` and ``ip_cidr``, up."""

    def __call__(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None: ...


def aws_cli_dir() -> Path:
    """Directory holding the ``aws`` CLI: this interpreter's venv ``bin`` if it has one."""
    venv_bin = Path(sys.prefix) / "bin"
    if (venv_bin / "aws").exists():
        return venv_bin
    found = shutil.which("aws")
    if found is None:
        raise FileNotFoundError("no `aws` CLI: install awscli into the harness venv")
    return Path(found).parent


# --------------------------------------------------------------------------------------------------
# Default attachment: ens5 leads into a per-run "detached" namespace


class _Detached:
    """A refcounted namespace holding the far ends of unattached instances' ``ens5`` veths."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ns: Namespace | None = None
        self._users = 0
        self._seq = 0

    def attach(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None:
        with self._lock:
            if self._ns is None:
                self._ns = Namespace("detached").open()
            self._users += 1
            self._seq += 1
            peer, far = f"d{self._seq}", self._ns
        try:
            netns.veth_pair(ns, ifname, far, peer, mac_a=mac)
            ns.add_address(ifname, ip_cidr)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._ns is not None:
                self._ns.close()
                self._ns, self._users = None, 0


_detached = _Detached()


# --------------------------------------------------------------------------------------------------
# One instance


@dataclass(frozen=True)
class StepTiming:
    """One boot step from the log: ``start``/``end`` are UTC datetimes, ``status`` done|error|running."""

    name: str
    start: datetime | None
    end: datetime | None
    status: str
    message: str = ""

    @property
    def seconds(self) -> float | None:
        """Duration, when the step started and ended."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class LogLine:
    """One ``nat-boot:`` log line."""

    time: datetime
    step: str
    message: str


def parse_boot_log(text: str) -> list[LogLine]:
    """The ``<ISO8601 UTC ms> nat-boot: step=<name> <message>`` lines of ``text``."""
    lines = []
    for raw in text.splitlines():
        if m := _LOG_LINE.match(raw.strip()):
            lines.append(LogLine(datetime.fromisoformat(m["time"]), m["step"], m["message"] or ""))
    return lines


def step_timings(lines: list[LogLine]) -> dict[str, StepTiming]:
    """Per step (in log order): start, end and outcome from its ``start``/``done``/``error`` lines."""
    steps: dict[str, StepTiming] = {}
    for line in lines:
        word = line.message.split(" ", 1)[0]
        old = steps.get(line.step)
        if word == "start":
            steps[line.step] = StepTiming(line.step, line.time, None, "running")
        elif word in ("done", "error") and old is not None:
            status = "done" if word == "done" else "error"
            steps[line.step] = StepTiming(line.step, old.start, line.time, status, line.message)
        elif word == "error":
            steps[line.step] = StepTiming(line.step, None, line.time, "error", line.message)
    return steps


class InstanceSandbox:
    """One emulated instance booting its user data; a context manager (``close()`` on exit).

    ``start()`` creates the namespace, attaches ``ens5``, starts IMDS and the relay, then the user
    data (after ``boot_delay`` seconds, modelling the time EC2 takes to boot). Half-way failures
    undo what was made. ``terminate()`` kills everything and deletes the namespace but keeps the
    files (the instance died); ``close()`` also removes the instance dir unless ``keep``.
    """

    def __init__(
        self,
        identity: InstanceIdentity,
        user_data: bytes,
        backend_port: int,
        *,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        attach: AttachFn | None = None,
        boot_delay: float = 0.0,
        user_data_transform: Callable[[bytes], bytes] | None = None,
        on_exit: Callable[[InstanceSandbox, int], None] | None = None,
        keep: bool = False,
    ) -> None:
        self.identity = identity
        self.original_user_data = user_data  # as read back from the emulator
        self.user_data = user_data_transform(user_data) if user_data_transform else user_data
        self.backend_port = backend_port
        self.env_overrides = dict(env or {})
        self.attach = attach
        self.boot_delay = boot_delay
        self.on_exit = on_exit
        self.keep = keep
        self._own_workdir = workdir is None
        base = Path(tempfile.mkdtemp(prefix="natlab-")) if workdir is None else Path(workdir)
        self.dir = base / identity.instance_id
        self.ns: Namespace | None = None
        self.imds: ImdsServer | None = None
        self.relay: TcpRelay | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        """``time.time()`` when the boot process was started (before ``boot_delay``)."""
        self.exited_at: float | None = None
        self.exit_code: int | None = None
        self.terminated = False
        self._detached_used = False
        self._waiter: threading.Thread | None = None
        self._imds_requests: list[ImdsRequest] = []

    # -- paths -------------------------------------------------------------------------------------

    @property
    def console_path(self) -> Path:
        return self.dir / "console.log"

    @property
    def shim_log_path(self) -> Path:
        return self.dir / "shim-calls.log"

    def upper(self, mountpoint: str) -> Path:
        """The overlay upper dir standing for ``mountpoint`` (``/etc`` or ``/var/log``)."""
        return self.dir / "upper" / mountpoint.strip("/")

    @property
    def hostname(self) -> str:
        """EC2's default host name, set in the instance's own UTS namespace."""
        return f"ip-{self.identity.private_ip.replace('.', '-')}"

    @property
    def boot_log_path(self) -> Path:
        """Where the boot script's log file lands on the host."""
        path = self.env_overrides.get("NAT_LOG_FILE", DEFAULT_LOG_FILE)
        for mountpoint in OVERLAID:
            if path.startswith(mountpoint + "/"):
                return self.upper(mountpoint) / path[len(mountpoint) + 1 :]
        return Path(path)

    # -- lifecycle ---------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The complete environment the user data runs with (nothing from the host)."""
        env = {
            "PATH": f"{SHIMS_DIR}:{aws_cli_dir()}:{SYSTEM_PATH}",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{RELAY_PORT}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.identity.region,
            "NATLAB_SHIM_LOG": str(self.shim_log_path),
            "NATLAB_INSTANCE_ID": self.identity.instance_id,
        }
        env.update(self.env_overrides)
        return env

    def _write_files(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        for mountpoint in OVERLAID:
            self.upper(mountpoint).mkdir(parents=True, exist_ok=True)
            (self.dir / "work" / mountpoint.strip("/")).mkdir(parents=True, exist_ok=True)
            if in_user_namespace():
                mirror_directories(Path(mountpoint), self.upper(mountpoint))
        (self.dir / "user-data").write_bytes(self.user_data)
        self.shim_log_path.touch()
        mounts = []
        for mountpoint in OVERLAID:
            work = self.dir / "work" / mountpoint.strip("/")
            options = f"lowerdir={mountpoint},upperdir={self.upper(mountpoint)},workdir={work}"
            mounts.append(f"mount -t overlay overlay -o {shlex.quote(options)} {mountpoint}\n")
        delay = f"sleep {self.boot_delay:.3f}\n" if self.boot_delay > 0 else ""
        wrapper = self.dir / "boot.sh"
        wrapper.write_text(
            "#!/usr/bin/env bash\n"
            f"# natlab boot of {self.identity.instance_id}: run by `ip netns exec NS unshare -m -u`.\n"
            "set -o errexit -o nounset -o pipefail\n"
            f"{delay}"
            f"hostname {shlex.quote(self.hostname)}\n"
            "mount --make-rprivate /\n"
            f"{''.join(mounts)}"
            f"cd {shlex.quote(str(self.dir))}\n"
            f"exec bash {shlex.quote(str(self.dir / 'user-data'))}\n"
        )
        return wrapper

    def start(self) -> InstanceSandbox:
        """Boot: namespace, ``ens5``, IMDS, relay, then the user data in the background."""
        try:
            wrapper = self._write_files()
            self.ns = Namespace(self.identity.instance_id).open()
            ip_cidr = f"{self.identity.private_ip}/{self.identity.prefix_len}"
            if self.attach is None:
                _detached.attach(self.ns, PRIMARY_IFNAME, self.identity.mac, ip_cidr)
                self._detached_used = True
            else:
                self.attach(self.ns, ifname=PRIMARY_IFNAME, mac=self.identity.mac, ip_cidr=ip_cidr)
            self.imds = ImdsServer(self.ns, self.identity, user_data=self.user_data).start()
            self.relay = TcpRelay(self.ns, self.backend_port, listen_port=RELAY_PORT).start()
            with open(self.console_path, "ab") as console:
                self.started_at = time.time()
                self.proc = self.ns.popen(
                    ["unshare", "--mount", "--uts", "bash", str(wrapper)],
                    env=self.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                )
            self._waiter = threading.Thread(
                target=self._wait_exit, daemon=True, name=f"boot-{self.identity.instance_id}"
            )
            self._waiter.start()
        except BaseException:
            self.close()
            raise
        log.info("%s: booting in %s (%s)", self.identity.instance_id, self.ns.name, self.dir)
        return self

    def _wait_exit(self) -> None:
        proc = self.proc
        assert proc is not None
        code = proc.wait()
        # background helpers of the script (e.g. `tee` of its log) finish their writes first
        end = time.monotonic() + 1.0
        while time.monotonic() < end and _group_alive(proc.pid):
            time.sleep(0.02)
        self.exited_at = time.time()
        self.exit_code = code
        log.info("%s: user data exited %d", self.identity.instance_id, code)
        if self.on_exit is not None:
            try:
                self.on_exit(self, code)
            except Exception:
                log.exception("on_exit callback failed")

    def __enter__(self) -> InstanceSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait(self, timeout: float) -> int:
        """Wait for the user data to exit; its exit code (negative: killed by that signal)."""
        if self._waiter is None:
            raise RuntimeError(f"{self.identity.instance_id} was never started")
        self._waiter.join(timeout)
        if self._waiter.is_alive() or self.exit_code is None:
            raise TimeoutError(
                f"{self.identity.instance_id}: user data still running after {timeout} s; "
                f"console:\n{self.console_log()[-2000:]}"
            )
        return self.exit_code

    @property
    def running(self) -> bool:
        """True while the boot process has not exited."""
        return self.proc is not None and self.exit_code is None and not self.terminated

    def kill(self) -> None:
        """SIGKILL the boot process group and every process in the namespace."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.ns is not None:
            self.ns.kill_all()

    def terminate(self) -> None:
        """The instance dies: kill, stop IMDS and relay, delete the namespace. Files stay."""
        if self.terminated:
            return
        self.terminated = True
        try:
            self.kill()
        finally:
            if self.relay is not None:
                self.relay.close()
            if self.imds is not None:
                self._imds_requests = self.imds.requests
                self.imds.close()
            if self.ns is not None:
                self.ns.close()
            if self._detached_used:
                self._detached_used = False
                _detached.release()
            if self._waiter is not None:
                self._waiter.join(timeout=2)

    def close(self) -> None:
        """``terminate()``, then remove the instance dir unless ``keep``. Idempotent."""
        try:
            self.terminate()
        finally:
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
                if self._own_workdir:
                    shutil.rmtree(self.dir.parent, ignore_errors=True)

    # -- what happened -----------------------------------------------------------------------------

    def console_log(self) -> str:
        """The boot's stdout and stderr so far."""
        return _read(self.console_path)

    def boot_log(self) -> str:
        """The log file the boot script wrote (empty if none yet)."""
        return _read(self.boot_log_path)

    def log_lines(self) -> list[LogLine]:
        """The parsed ``nat-boot:`` lines of the boot log."""
        return parse_boot_log(self.boot_log())

    def step_times(self) -> dict[str, StepTiming]:
        """Each step's start, end and outcome, from the boot log."""
        return step_timings(self.log_lines())

    def shim_calls(self) -> list[str]:
        """Calls recorded by the shims, one ``"<command> <args>"`` string each."""
        return _read(self.shim_log_path).splitlines()

    def etc_changes(self) -> dict[str, str | None]:
        """Files the boot wrote under ``/etc``: relative path -> content (None: deleted)."""
        return _overlay_changes(self.upper("/etc"))

    def var_log_changes(self) -> dict[str, str | None]:
        """Files the boot wrote under ``/var/log``: relative path -> content (None: deleted)."""
        return _overlay_changes(self.upper("/var/log"))

    @property
    def imds_requests(self) -> list[ImdsRequest]:
        """Requests IMDS answered (kept after the instance died)."""
        return self.imds.requests if self.imds is not None and not self.terminated else list(self._imds_requests)

    def repro_command(self) -> str:
        """A shell command that re-runs this boot by hand (namespace must exist)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.environment().items())
        name = self.ns.name if self.ns else "<netns>"
        return f"env -i {env} ip netns exec {name} unshare -m -u bash {shlex.quote(str(self.dir))}/boot.sh"

    def describe(self) -> str:
        """A failure-report block: state, console tail, boot log, shim calls."""
        return (
            f"== instance {self.identity.instance_id} ({self.identity.private_ip}, "
            f"exit={self.exit_code}, dir={self.dir})\n"
            f"-- console (tail)\n{self.console_log()[-4000:]}\n"
            f"-- boot log\n{self.boot_log()}\n"
            f"-- shim calls\n" + "\n".join(self.shim_calls()) + "\n"
            f"-- reproduce\n{self.repro_command()}\n"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace (the rootless harness), not as the machine's root."""
    try:
        return Path("/proc/self/uid_map").read_text().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def mirror_directories(lower: Path, upper: Path) -> None:
    """Pre-creates lower's directories in the overlay's upper dir (same modes).

    In a user namespace the lower directories belong to an unmapped owner, so the namespace's root
    may not create files in them; a directory that also exists in the upper dir takes the upper
    one's owner (us) in the merged view, and writes work as they would for the machine's root.
    """
    for directory, subdirs, _ in os.walk(lower, onerror=lambda error: None):
        for name in subdirs:
            source = Path(directory) / name
            if source.is_symlink():
                continue
            target = upper / source.relative_to(lower)
            with contextlib.suppress(OSError):
                target.mkdir(exist_ok=True)
                target.chmod(source.stat().st_mode & 0o7777 | 0o700)


def _overlay_changes(upper: Path) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    if not upper.exists():
        return changes
    for path in sorted(upper.rglob("*")):
        rel = str(path.relative_to(upper))
        st = path.lstat()
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            changes[rel] = None  # overlay whiteout: deleted
        elif stat.S_ISREG(st.st_mode):
            changes[rel] = path.read_text(errors="replace")
    return changes


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process is in process group ``pgid``.

    Zombies are ignored: an orphaned helper (the script's ``tee``) is reparented to PID 1, which on
    some machines (a firecracker VM's init here) does not reap it for a long time.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# A fleet that follows the emulator


@dataclass(frozen=True)
class FleetEvent:
    """Something that happened to an instance, for the timeline."""

    time: float
    """``time.time()`` of the event."""
    kind: str
    """``boot-start`` | ``boot-exit`` | ``boot-failed`` | ``terminated``"""
    instance_id: str
    detail: dict[str, Any] = field(default_factory=dict)


def _clients(backend_port: int, region: str) -> tuple[Any, Any]:
    import boto3  # deferred: netns/imds users need not have boto3

    kw = {
        "endpoint_url": f"http://127.0.0.1:{backend_port}",
        "region_name": region,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    return boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)


def identity_from_backend(ec2: Any, instance: Mapping[str, Any], region: str) -> InstanceIdentity:
    """Build an ``InstanceIdentity`` from a DescribeInstances item (plus its VPC and subnet)."""
    primary = next(n for n in instance["NetworkInterfaces"] if n.get("Attachment", {}).get("DeviceIndex", 0) == 0)
    vpc = ec2.describe_vpcs(VpcIds=[instance["VpcId"]])["Vpcs"][0]
    cidrs = tuple(
        a["CidrBlock"]
        for a in vpc.get("CidrBlockAssociationSet", [])
        if a.get("CidrBlockState", {}).get("State", "associated") == "associated"
    ) or (vpc["CidrBlock"],)
    subnet = ec2.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]
    return InstanceIdentity(
        instance_id=instance["InstanceId"],
        region=region,
        az=instance["Placement"]["AvailabilityZone"],
        mac=primary["MacAddress"],
        interface_id=primary["NetworkInterfaceId"],
        private_ip=primary.get("PrivateIpAddress") or instance["PrivateIpAddress"],
        subnet_id=instance["SubnetId"],
        vpc_id=instance["VpcId"],
        vpc_cidrs=cidrs,
        subnet_cidr=subnet["CidrBlock"],
        ami_id=instance.get("ImageId", "ami-00000000000000000"),
        instance_type=instance.get("InstanceType", "t4g.nano"),
    )


def user_data_from_backend(ec2: Any, instance: Mapping[str, Any]) -> bytes:
    """The instance's user data (base64-decoded).

    moto 5.2.5 returns the launch template's user data from DescribeInstanceAttribute(userData) for
    ASG-launched instances (checked). Should it ever come back empty, fall back to the launch
    template version named by the instance's ``aws:ec2launchtemplate:*`` tags.
    """
    attr = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    value = attr.get("UserData", {}).get("Value")
    if value:
        return base64.b64decode(value)
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    template = tags.get("aws:ec2launchtemplate:id")
    if not template:
        return b""
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=template, Versions=[tags.get("aws:ec2launchtemplate:version", "$Latest")]
    )
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("UserData", "")
    return base64.b64decode(data) if data else b""


class InstanceFleet:
    """Boots a sandbox for every running Auto Scaling instance the emulator has; a context manager.

    A thread polls DescribeAutoScalingGroups + DescribeInstances every ``poll_interval`` seconds.
    A new running instance (in an ASG, or tagged ``aws:autoscaling:groupName``) gets an
    ``InstanceSandbox``; an instance that turns shutting-down/terminated/stopping/stopped has its
    sandbox terminated (namespace deleted, files kept until ``close()``). ``events`` (and the
    ``on_event`` callback, called from the fleet's threads) record boot-start/boot-exit/terminated.
    ``sandbox_kwargs`` go to every ``InstanceSandbox`` (env, attach, boot_delay,
    user_data_transform, keep).
    """

    def __init__(
        self,
        backend_port: int,
        *,
        region: str = "us-east-1",
        workdir: Path | None = None,
        poll_interval: float = 0.2,
        on_event: Callable[[FleetEvent], None] | None = None,
        **sandbox_kwargs: Any,
    ) -> None:
        self.backend_port = backend_port
        self.region = region
        self.poll_interval = poll_interval
        self.on_event = on_event
        self.sandbox_kwargs = sandbox_kwargs
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="natlab-fleet-")) if workdir is None else Path(workdir)
        self.sandboxes: dict[str, InstanceSandbox] = {}
        self.events: list[FleetEvent] = []
        self._failed: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ec2, self._asg = _clients(backend_port, region)

    def start(self) -> InstanceFleet:
        """Start watching (one poll happens before returning)."""
        try:
            self.poll_once()
            self._thread = threading.Thread(target=self._loop, name="natlab-fleet", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> InstanceFleet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching and close every sandbox. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            boxes = list(self.sandboxes.values())
        for box in boxes:
            try:
                box.close()
            except Exception:
                log.exception("closing %s failed", box.identity.instance_id)
        if self._own_workdir and not self.sandbox_kwargs.get("keep"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _emit(self, kind: str, instance_id: str, **detail: Any) -> None:
        event = FleetEvent(time.time(), kind, instance_id, detail)
        with self._lock:
            self.events.append(event)
        log.info("fleet: %s %s %s", kind, instance_id, detail or "")
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except Exception as exc:  # emulator reset/restart: keep watching
                log.warning("fleet poll failed: %s", exc)

    def _asg_instances(self) -> set[str]:
        ids: set[str] = set()
        for page in self._asg.get_paginator("describe_auto_scaling_groups").paginate():
            for group in page["AutoScalingGroups"]:
                ids.update(i["InstanceId"] for i in group.get("Instances", []))
        return ids

    def _instances(self) -> Iterator[dict[str, Any]]:
        for page in self._ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                yield from reservation["Instances"]

    def poll_once(self) -> None:
        """One look at the emulator: boot new ASG instances, terminate dead ones."""
        members = self._asg_instances()
        with self._lock:
            for instance in self._instances():
                iid, state = instance["InstanceId"], instance["State"]["Name"]
                tags = {t["Key"] for t in instance.get("Tags", [])}
                in_asg = iid in members or "aws:autoscaling:groupName" in tags
                box = self.sandboxes.get(iid)
                if box is None and in_asg and state == "running" and iid not in self._failed:
                    self._boot(instance)
                elif box is not None and state in TERMINAL_STATES and not box.terminated:
                    box.terminate()
                    self._emit("terminated", iid, state=state)

    def _boot(self, instance: dict[str, Any]) -> None:
        iid = instance["InstanceId"]
        try:
            identity = identity_from_backend(self._ec2, instance, self.region)
            user_data = user_data_from_backend(self._ec2, instance)
            box = InstanceSandbox(
                identity,
                user_data,
                self.backend_port,
                workdir=self.workdir,
                on_exit=self._exited,
                **self.sandbox_kwargs,
            )
            self.sandboxes[iid] = box
            box.start()
        except Exception as exc:
            self._failed.add(iid)
            self.sandboxes.pop(iid, None)
            log.exception("booting %s failed", iid)
            self._emit("boot-failed", iid, error=repr(exc))
            return
        self._emit(
            "boot-start",
            iid,
            netns=box.ns.name if box.ns else None,
            private_ip=identity.private_ip,
            eni=identity.interface_id,
            boot_delay=box.boot_delay,
        )

    def _exited(self, box: InstanceSandbox, code: int) -> None:
        if not box.terminated:
            self._emit("boot-exit", box.identity.instance_id, exit_code=code)

    # -- queries -----------------------------------------------------------------------------------

    def get(self, instance_id: str) -> InstanceSandbox | None:
        """The sandbox of ``instance_id`` (also for dead instances), if any."""
        with self._lock:
            return self.sandboxes.get(instance_id)

    def live(self) -> list[InstanceSandbox]:
        """Sandboxes of instances not terminated."""
        with self._lock:
            return [b for b in self.sandboxes.values() if not b.terminated]

    def wait_for(self, predicate: Callable[[InstanceFleet], InstanceSandbox | None], timeout: float) -> InstanceSandbox:
        """Poll ``predicate(fleet)`` with backoff until it returns a sandbox, or TimeoutError."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        last: Exception | None = None
        while True:
            try:
                if (found := predicate(self)) is not None:
                    return found
            except Exception as exc:  # predicate may race a half-booted sandbox
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no sandbox matched within {timeout} s (sandboxes: {sorted(self.sandboxes)})"
                ) from last
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def describe(self) -> str:
        """Every sandbox's failure-report block (console, boot log, shim calls, repro command)."""
        with self._lock:
            boxes = list(self.sandboxes.values())
        return "\n".join(box.describe() for box in boxes) or "(no instance booted)\n"

    def wait_booted(self, instance_id: str, timeout: float) -> InstanceSandbox:
        """Wait until ``instance_id`` has a sandbox; return it."""
        return self.wait_for(lambda fleet: fleet.get(instance_id), timeout)
