"""One emulated EC2 instance that really boots: a network namespace + IMDSv2 + relay + its user data.

``InstanceSandbox`` is one booted instance (docs/design.md, "Harness sandbox for one instance"):

* a namespace ``natlab-<run>-<instance id>`` whose ``ens5`` carries the instance's MAC and private
  IP. The data plane wires it through an ``attach(ns, ifname=, mac=, ip_cidr=)`` callback (veth to
  its subnet's bridge, default route); without one, ``ens5`` leads into the per-run detached
  namespace (``detached.py``), so the interface exists but leads nowhere;
* IMDSv2 on ``169.254.169.254:80`` and a TCP relay ``127.0.0.1:4566`` -> the emulator on the
  host's loopback, both inside that namespace;
* the user data run by ``bash`` in private mount and UTS namespaces, with overlays on ``/etc`` and
  ``/var/log``, recording shims first on ``PATH`` and an environment built from scratch
  (``boot_env.py``: the ``boot.sh`` wrapper and that environment);
* the software of its image (``image.py``): the profile's packages only (the host's ``nft`` is
  absent on ``al2023``), what ``dnf`` installed kept in ``<instance dir>/image``, and the memory of
  its instance type in ``/proc/meminfo``.

The boot log is left where the script writes it by default (``NAT_LOG_FILE`` unset, i.e.
``/var/log/nat-instance-boot.log``): it lands in the ``/var/log`` overlay's upper dir, so the very
default path of the real script is exercised. ``NAT_LOG_FILE`` given in ``env`` is honoured:
a path under ``/var/log`` or ``/etc`` is read from the overlay, any other path as is.

Files of an instance dir: ``user-data`` (what runs), ``boot.sh`` (the wrapper; ``repro_command()``
prints how to run it by hand), ``console.log`` (stdout+stderr), ``shim-calls.log``, ``upper/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from natlab.module import bootlog
from natlab.resource import Resource
from natlab.waiting import wait_until

from .boot_env import RELAY_PORT, boot_environment, boot_wrapper
from .detached import DETACHED
from .image import Image
from .imds import ImdsRequest, ImdsServer, InstanceIdentity
from .netns import Namespace
from .overlay import Overlays
from .process_groups import group_alive
from .relay import TcpRelay

log = logging.getLogger(__name__)

PRIMARY_IFNAME = "ens5"
DEFAULT_LOG_FILE = "/var/log/nat-instance-boot.log"
WATCH_LOG_FILE = "/var/log/nat-instance-watch.log"


class AttachFn(Protocol):
    """Gives the instance its primary interface: ``ifname`` with ``mac`` and ``ip_cidr``, up."""

    def __call__(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None: ...


class InstanceSandbox(Resource):
    """One emulated instance booting its user data.

    ``start()`` creates the namespace, attaches ``ens5``, starts IMDS and the relay, then the user
    data (after ``boot_delay`` seconds, modelling the time EC2 takes to boot). ``terminate()`` kills
    everything and deletes the namespace but keeps the files (the instance died); ``close()`` also
    removes the instance dir unless ``keep``. Both cope with a half-done ``start()``.
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
        image: Image | None = None,
        imds_v1: bool = False,
        target_lifecycle_state: str | None = None,
        started_again: bool = False,
    ) -> None:
        """``target_lifecycle_state``: what IMDS says at ``autoscaling/target-lifecycle-state``
        (None: no such path). ``started_again``: a start of an instance that booted before (its
        instance dir is its disk): the units its first boot enabled run, not the user data."""
        self.identity = identity
        self.original_user_data = user_data  # as read back from the emulator
        self.user_data = user_data_transform(user_data) if user_data_transform else user_data
        self.backend_port = backend_port
        self.env_overrides = dict(env or {})
        self.attach = attach
        self.boot_delay = boot_delay
        self.on_exit = on_exit
        self.keep = keep
        self.imds_v1 = imds_v1  # HttpTokens=optional: token-less IMDS GETs answered (old user data)
        self.target_lifecycle_state = target_lifecycle_state
        self.started_again = started_again
        self._own_workdir = workdir is None
        base = Path(tempfile.mkdtemp(prefix="natlab-")) if workdir is None else Path(workdir)
        self.dir = base / identity.instance_id
        self.image = image or Image()
        self.disk = self.image.disk(self.dir)
        self.overlays = Overlays(self.dir, extra=tuple(self.disk.overlay_dirs()))
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
        return self.overlays.upper(mountpoint)

    @property
    def hostname(self) -> str:
        """EC2's default host name, set in the instance's own UTS namespace."""
        return f"ip-{self.identity.private_ip.replace('.', '-')}"

    @property
    def boot_log_path(self) -> Path:
        """Where the boot script's log file lands on the host."""
        return self.overlays.host_path(self.env_overrides.get("NAT_LOG_FILE", DEFAULT_LOG_FILE))

    # -- lifecycle ---------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The complete environment the user data runs with (nothing from the host)."""
        return boot_environment(
            self.identity, self.dir, self.shim_log_path, self.disk.environment(), self.env_overrides
        )

    def _write_files(self) -> Path:
        """The instance dir: overlays, ``user-data``, the shim log and the ``boot.sh`` wrapper."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.overlays.prepare()
        self.disk.prepare()
        (self.dir / "user-data").write_bytes(self.user_data)
        self.shim_log_path.touch()
        wrapper = self.dir / "boot.sh"
        wrapper.write_text(
            boot_wrapper(
                self.identity.instance_id,
                self.hostname,
                self.dir,
                self.overlays,
                self.disk,
                boot_delay=self.boot_delay,
                started_again=self.started_again,
            )
        )
        return wrapper

    def start(self) -> InstanceSandbox:
        """Boot: namespace, ``ens5``, IMDS, relay, then the user data in the background."""
        # /run is a tmpfs on a real instance: a start (after a stop or a reboot) finds it empty.
        shutil.rmtree(self.overlays.upper("/run"), ignore_errors=True)
        wrapper = self._write_files()
        self.ns = Namespace(self.identity.instance_id).open()
        self._attach_primary(self.ns)
        self.imds = ImdsServer(self.ns, self.identity, user_data=self.user_data, allow_v1=self.imds_v1).start()
        if self.target_lifecycle_state is not None:
            self.imds.set_target_lifecycle_state(self.target_lifecycle_state)
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
        self._waiter = threading.Thread(target=self._wait_exit, daemon=True, name=f"boot-{self.identity.instance_id}")
        self._waiter.start()
        how = "its enabled units" if self.started_again else "its user data"
        log.info("%s: booting %s in %s (%s)", self.identity.instance_id, how, self.ns.name, self.dir)
        return self

    def _attach_primary(self, ns: Namespace) -> None:
        ip_cidr = f"{self.identity.private_ip}/{self.identity.prefix_len}"
        if self.attach is None:
            DETACHED.attach(ns, PRIMARY_IFNAME, self.identity.mac, ip_cidr)
            self._detached_used = True
        else:
            self.attach(ns, ifname=PRIMARY_IFNAME, mac=self.identity.mac, ip_cidr=ip_cidr)

    def _wait_exit(self) -> None:
        proc = self.proc
        assert proc is not None
        code = proc.wait()
        # background helpers of the script (e.g. `tee` of its log) finish their writes first
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not group_alive(proc.pid), what="boot helpers to exit", timeout=1.0, interval=0.02)
        self.exited_at = time.time()
        self.exit_code = code
        log.info("%s: user data exited %d", self.identity.instance_id, code)
        if self.on_exit is not None:
            try:
                self.on_exit(self, code)
            except Exception:
                log.exception("on_exit callback failed")

    def wait(self, timeout: float) -> int:
        """Wait for the user data to exit; its exit code (negative: killed by that signal)."""
        waiter = self._waiter
        if waiter is None:
            raise RuntimeError(f"{self.identity.instance_id} was never started")

        def exit_code() -> int | None:
            return None if waiter.is_alive() else self.exit_code

        what = f"exit of {self.identity.instance_id}'s user data"
        try:
            return wait_until(exit_code, what=what, timeout=timeout, interval=0.01, max_interval=0.1)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; console:\n{self.console_log()[-2000:]}") from error

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
            self._release()

    def _release(self) -> None:
        """Stop the relay and IMDS (keeping its requests), delete the namespace and its ``ens5``."""
        if self.relay is not None:
            self.relay.close()
        if self.imds is not None:
            self._imds_requests = self.imds.requests
            self.imds.close()
        if self.ns is not None:
            self.ns.close()
        if self._detached_used:
            self._detached_used = False
            DETACHED.release()
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

    def log_lines(self) -> list[bootlog.BootLine]:
        """The parsed ``nat-boot:`` lines of the boot log."""
        return bootlog.parse(self.boot_log())

    def step_times(self) -> dict[str, bootlog.BootStep]:
        """Each step's start, end and outcome, from the boot log."""
        return bootlog.step_times(self.boot_log())

    def shim_calls(self) -> list[str]:
        """Calls recorded by the shims, one ``"<command> <args>"`` string each."""
        return _read(self.shim_log_path).splitlines()

    def etc_changes(self) -> dict[str, str | None]:
        """Files the boot wrote under ``/etc``: relative path -> content (None: deleted)."""
        return self.overlays.changes("/etc")

    def var_log_changes(self) -> dict[str, str | None]:
        """Files the boot wrote under ``/var/log``: relative path -> content (None: deleted)."""
        return self.overlays.changes("/var/log")

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
            f"-- takeover watcher log (tail)\n{_read(self.overlays.host_path(WATCH_LOG_FILE))[-4000:]}\n"
            f"-- shim calls\n" + "\n".join(self.shim_calls()) + "\n"
            f"-- reproduce\n{self.repro_command()}\n"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
