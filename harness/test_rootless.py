"""Rootless runs on a shared machine: an ordinary user, with an ordinary PATH, after root has run the harness.

Inside the user namespace of scripts/rootless.sh every user is "root"; each run must still get its
own temp space (pytest's /tmp/pytest-of-root may belong to the real root or another user). And a
Debian user's PATH has no /usr/sbin, where nft and friends live: the harness finds them anyway.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from natlab.cloud import tools
from natlab.cloud.netns import Namespace
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.cloud.overlay import in_user_namespace

REPO = Path(__file__).resolve().parent.parent
ROOTLESS = REPO / "scripts" / "rootless.sh"
#: What an ordinary Debian user has: no /usr/sbin, no /sbin.
DEBIAN_USER_PATH = "/usr/local/bin:/usr/bin:/bin"
#: A data-plane subset that needs nft (only in /usr/sbin) and, with xdist, pytest's temp space at start.
DATAPLANE_SUBSET = (
    "harness/test_netns.py",
    "harness/test_dataplane_routing.py::test_egress_goes_through_nat_a_and_the_internet_sees_its_elastic_ip",
    # an image's missing packages are deleted in an overlay of the host's /usr/sbin, owned by an unmapped uid
    "harness/test_image_profiles.py::test_the_image_decides_which_packages_an_instance_has",
)
UNPRIVILEGED_USER = "nobody"

needs_netns = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")


@pytest.fixture
def debian_user_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's PATH is an ordinary user's, and tool look-ups start afresh."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{DEBIAN_USER_PATH}")
    tools.find.cache_clear()
    yield
    tools.find.cache_clear()


# --- finding the tools ----------------------------------------------------------------------------


def test_a_tool_outside_path_is_found_where_debian_installs_it(debian_user_path: None) -> None:
    installed = next((Path(d) / "nft" for d in ("/usr/sbin", "/sbin") if (Path(d) / "nft").exists()), None)
    if installed is None:
        pytest.skip("nft (Debian package nftables) is not installed in /usr/sbin or /sbin here")
    assert shutil.which("nft") is None, "the PATH of this test must not hold nft"
    assert Path(tools.tool("nft")).resolve() == installed.resolve()
    assert tools.command(["nft", "-f", "-"])[1:] == ["-f", "-"]


def test_a_missing_tool_is_named_with_its_debian_package() -> None:
    assert tools.find("natlab-no-such-tool") is None
    reason = tools.missing_reason("natlab-no-such-tool", "ip")
    assert reason is not None and "`natlab-no-such-tool` not found" in reason and "`ip`" not in reason
    with pytest.raises(tools.ToolNotFound, match="natlab-no-such-tool"):
        tools.tool("natlab-no-such-tool")
    assert all(tool in tools.DEBIAN_PACKAGES for tool in tools.DATAPLANE_TOOLS), "every needed tool names its package"


@needs_netns
@pytest.mark.dataplane
def test_nft_runs_in_a_namespace_without_sbin_on_path(debian_user_path: None) -> None:
    with Namespace() as ns:
        ns.run(["nft", "add", "table", "ip", "natlab_probe"])
        assert "natlab_probe" in ns.run(["nft", "list", "tables"], text=True).stdout


# --- temp space -----------------------------------------------------------------------------------


def _rootless_available() -> str | None:
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return None if probe.returncode == 0 else f"user namespaces are unavailable here: {probe.stderr.strip()}"


def test_each_rootless_run_has_its_own_empty_temp_space() -> None:
    if reason := _rootless_available():
        pytest.skip(reason)
    leave_a_file = (
        "import os, tempfile; d = tempfile.gettempdir(); print(d, sorted(os.listdir(d)));"
        "open(os.path.join(d, 'natlab-left-by-the-first-run'), 'w').close()"
    )
    runs = [
        subprocess.run(
            [str(ROOTLESS), sys.executable, "-c", leave_a_file],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split(" ", 1)
        for _ in range(2)
    ]
    assert runs[0] == runs[1] == ["/run/tmp", "[]\n"], "each run starts with an empty temp dir of its own"
    assert not Path("/run/tmp/natlab-left-by-the-first-run").exists(), "nothing leaks out of the run"


# --- an ordinary user, after root ------------------------------------------------------------------


def _as_user(
    user: pwd.struct_passwd, argv: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` as ``user`` with exactly ``env`` (no supplementary groups, nothing inherited)."""
    return subprocess.run(
        [
            tools.tool("setpriv"),
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "env",
            "-i",
            *(f"{key}={value}" for key, value in env.items()),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def _python_for(user: pwd.struct_passwd, env: Mapping[str, str], home: Path) -> str:
    """An interpreter ``user`` can run that imports the harness: this one, or else (when it lives
    where the user cannot read, e.g. a pyenv under /root) a venv of the system's python of the same
    version that loads this venv's packages."""
    if _as_user(user, [sys.executable, "-c", "import natlab, pytest, xdist"], env, 60).returncode == 0:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system_python = shutil.which(version, path=DEBIAN_USER_PATH)
    if system_python is None:
        pytest.skip(f"{user.pw_name} cannot run {sys.executable} and there is no system {version}")
    venv = home / "venv"
    subprocess.run([system_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    purelib = sysconfig.get_paths()["purelib"]
    (site_packages / "natlab-harness-venv.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    return str(venv / "bin" / "python")


@needs_netns
@pytest.mark.dataplane
def test_ordinary_user_with_a_debian_path_runs_the_data_plane_rootless_after_root(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if os.geteuid() != 0 or in_user_namespace():
        pytest.skip("switching to an unprivileged uid needs the machine's root (this run is not)")
    if tools.find("setpriv") is None:
        pytest.skip("setpriv (Debian package util-linux) is not installed")
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        pytest.skip(f"there is no user {UNPRIVILEGED_USER!r} here")
    # Root has run pytest here: its base temp dir exists and is root's (the state that broke rootless runs).
    tmp_path_factory.getbasetemp()
    root_temp = Path("/tmp/pytest-of-root")
    root_temp.mkdir(mode=0o700, exist_ok=True)
    assert root_temp.stat().st_uid == 0
    home = Path(tempfile.mkdtemp(prefix="natlab-rootless-home-", dir="/tmp"))
    try:
        home.chmod(0o755)
        env = {"PATH": DEBIAN_USER_PATH, "HOME": str(home), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        for check, reason in (
            (["test", "-r", DATAPLANE_SUBSET[0]], f"the checkout {REPO} is not readable by {user.pw_name}"),
            (["unshare", "--user", "--map-root-user", "--net", "--mount", "true"], "no user namespaces for users"),
        ):
            if _as_user(user, check, env, 30).returncode != 0:
                pytest.skip(reason)
        python = _python_for(user, env, home)
        run = _as_user(
            user,
            [str(ROOTLESS), python, "-m", "pytest", *DATAPLANE_SUBSET, "-n", "1", "-p", "no:cacheprovider", "-q"],
            env,
            timeout=300,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, output
