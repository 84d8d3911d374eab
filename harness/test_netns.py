"""natlab.cloud.netns and netns_*: namespaces that clean up after themselves, and the helpers the data plane uses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.netns_cleanup import cleanup_stale
from natlab.cloud.netns_command import NamespaceError
from natlab.cloud.netns_links import bridge, set_master, veth_pair
from natlab.cloud.netns_names import PREFIX, RUN_ID, list_namespaces
from natlab.cloud.netns_sysctl import get_sysctl, set_sysctl
from natlab.waiting import wait_until

pytestmark = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")

LOG_MARTIANS = Path("/proc/sys/net/ipv4/conf/all/log_martians")


def _links(ns: Namespace) -> str:
    return ns.ip("-br", "link").stdout.decode()


def test_namespace_starts_with_lo_up_and_forwarding_off_and_is_gone_after_close() -> None:
    with Namespace("t-basic") as ns:
        assert ns.name.startswith(f"natlab-{RUN_ID}-")
        assert ns.name in list_namespaces()
        assert (
            "UP" in ns.ip("-br", "link", "show", "lo").stdout.decode()
            or "UNKNOWN" in ns.ip("-br", "link", "show", "lo").stdout.decode()
        )
        assert get_sysctl(ns, "net.ipv4.ip_forward") == "0"
    assert ns.name not in list_namespaces()


def test_close_kills_tracked_and_untracked_processes_inside() -> None:
    ns = Namespace("t-procs").open()
    try:
        tracked = ns.popen(["sleep", "300"])
        # a daemonised process the namespace does not know about
        ns.run(["bash", "-c", "setsid sleep 301 </dev/null >/dev/null 2>&1 &"])
        wait_until(lambda: len(ns.pids()) >= 2, what="two processes in the namespace", timeout=5, interval=0.01)
        untracked = [pid for pid in ns.pids() if pid != tracked.pid]
        assert untracked, "the daemonised sleep should be in the namespace"
    finally:
        ns.close()
    assert tracked.poll() is not None
    for pid in untracked:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in _proc_state(pid)
    assert ns.name not in list_namespaces()


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_listen_socket_is_reachable_inside_the_namespace_only() -> None:
    with Namespace("t-sock") as ns:
        sock = ns.listen_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        inside = ns.popen(["bash", "-c", f"echo hello >/dev/tcp/127.0.0.1/{port}"])
        sock.settimeout(5)
        conn, _ = sock.accept()
        with conn:
            assert conn.recv(100) == b"hello\n"
        assert inside.wait(timeout=5) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass  # the host's loopback has no such listener


def test_veth_pair_joins_two_namespaces_with_the_given_macs() -> None:
    with Namespace("t-va") as a, Namespace("t-vb") as b:
        veth_pair(a, "ens5", b, "peer0", mac_a="02:00:00:00:aa:01", mac_b="02:00:00:00:bb:01")
        a.add_address("ens5", "10.9.0.5/24")
        b.add_address("peer0", "10.9.0.1/24")
        assert "02:00:00:00:aa:01" in _links(a)
        assert "02:00:00:00:bb:01" in _links(b)
        a.run(["ping", "-c", "1", "-W", "2", "10.9.0.1"], check=True)
    # deleting the namespaces took both veth ends with them
    assert (
        "peer0"
        not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True, timeout=10).stdout
    )


def test_bridge_keeps_its_fixed_mac_when_a_lower_mac_port_joins() -> None:
    with Namespace("t-br") as router, Namespace("t-host") as host:
        bridge(router, "br0", "02:aa:00:00:00:01")
        veth_pair(host, "eth0", router, "p0", mac_b="02:00:00:00:00:01")
        set_master(router, "p0", "br0")
        assert "02:aa:00:00:00:01" in router.ip("-br", "link", "show", "br0").stdout.decode()


def test_set_sysctl_changes_only_that_namespace() -> None:
    host_value = LOG_MARTIANS.read_text().strip()
    with Namespace("t-sysctl") as ns:
        new = "0" if host_value == "1" else "1"
        set_sysctl(ns, "net.ipv4.conf.all.log_martians", new)
        assert get_sysctl(ns, "net.ipv4.conf.all.log_martians") == new
        assert LOG_MARTIANS.read_text().strip() == host_value


def test_failed_start_removes_the_half_made_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_ip(self: Namespace, *args: str, **kwargs: object) -> None:
        raise NamespaceError("injected")

    monkeypatch.setattr(Namespace, "ip", broken_ip)
    ns = Namespace("t-broken")
    with pytest.raises(NamespaceError):
        ns.open()
    assert ns.name not in list_namespaces()


def test_cleanup_stale_removes_namespaces_of_dead_runs_and_keeps_live_ones() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}{dead.pid:x}-leftover"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"])
    try:
        with Namespace("t-live") as live:
            removed = cleanup_stale()
            assert stale in removed
            assert live.name in list_namespaces()
        assert sleeper.wait(timeout=5) != 0
    finally:
        sleeper.kill()
        subprocess.run(["ip", "netns", "del", stale], check=False, timeout=10, capture_output=True)
    assert stale not in list_namespaces()


def test_namespaces_are_available_to_root_here() -> None:
    assert unavailable_reason() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_still_removes_its_namespaces_and_processes(sig: int) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            # A run started in the background inherits SIGINT ignored; a user's Ctrl-C run does not.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from natlab.cloud.netns import Namespace\n"
            "from natlab.cloud.netns_cleanup import install_signal_handlers\n"
            "install_signal_handlers()\n"
            "ns = Namespace('t-interrupted').open()\n"
            "ns.popen(['sleep', '300'])\n"
            "print(ns.name, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name in list_namespaces()
        child.send_signal(sig)
        child.wait(timeout=10)
        assert name not in list_namespaces()
    finally:
        child.kill()
        child.wait()


def test_same_suffix_twice_gets_two_namespaces() -> None:
    with Namespace("t-twice") as a, Namespace("t-twice") as b:
        assert a.name != b.name
        assert {a.name, b.name} <= set(list_namespaces())
