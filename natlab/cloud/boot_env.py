"""What an instance's boot runs in: its ``boot.sh`` wrapper and an environment built from scratch.

* the wrapper runs the user data by ``bash`` in private mount and UTS namespaces (host name
  ``ip-a-b-c-d``), with overlays on ``/etc`` and ``/var/log`` (``overlay.py``: writes land in
  ``<instance dir>/upper/{etc,var/log}``) and the mounts of the image's disk (``image.py``); a start of
  an instance that booted before runs the units its first boot enabled instead (``systemd_units.py``);
* the environment puts recording shims for ``systemctl``/``dnf``/``aws`` first on ``PATH`` and
  inherits nothing from the host: ``HOME`` is the instance dir, so the ``aws`` CLI never reads
  ``~/.aws``; no credentials either: the script reads the instance role's from IMDS, as on EC2.
  The API endpoint is the instance's relay on ``127.0.0.1:4566``.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from .image import InstanceDisk
from .imds import InstanceIdentity
from .overlay import Overlays
from .systemd_units import start_commands

SHIMS_DIR = Path(__file__).resolve().parent / "shims"
RELAY_PORT = 4566
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def aws_cli_dir() -> Path:
    """Directory holding the ``aws`` CLI: this interpreter's venv ``bin`` if it has one."""
    venv_bin = Path(sys.prefix) / "bin"
    if (venv_bin / "aws").exists():
        return venv_bin
    # An interpreter that loads the harness venv's packages from outside it (the unprivileged run of
    # harness/test_rootless.py): the `aws` beside the awscli package.
    with contextlib.suppress(ImportError):
        import awscli

        package_bin = Path(awscli.__file__).resolve().parents[4] / "bin"
        if (package_bin / "aws").exists():
            return package_bin
    found = shutil.which("aws")
    if found is None:
        raise FileNotFoundError("no `aws` CLI: install awscli into the harness venv")
    return Path(found).parent


def boot_environment(
    identity: InstanceIdentity,
    instance_dir: Path,
    shim_log: Path,
    image_env: Mapping[str, str],
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """The complete environment the user data runs with (nothing from the host); ``overrides`` win."""
    env = {
        "PATH": f"{SHIMS_DIR}:{aws_cli_dir()}:{SYSTEM_PATH}",
        "HOME": str(instance_dir),
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{RELAY_PORT}",
        "AWS_DEFAULT_REGION": identity.region,
        "NATLAB_SHIM_LOG": str(shim_log),
        "NATLAB_AWS_CLI": str(aws_cli_dir() / "aws"),
        "NATLAB_INSTANCE_ID": identity.instance_id,
    }
    env.update(image_env)
    env.update(overrides)
    return env


def boot_wrapper(
    instance_id: str,
    hostname: str,
    instance_dir: Path,
    overlays: Overlays,
    disk: InstanceDisk,
    *,
    boot_delay: float,
    started_again: bool,
) -> str:
    """The text of ``boot.sh``: after ``boot_delay`` s, host name and mounts, then the user data in
    ``instance_dir`` (``started_again``: the commands of the units its first boot enabled)."""
    delay = f"sleep {boot_delay:.3f}\n" if boot_delay > 0 else ""
    if started_again:
        commands = start_commands(overlays.upper("/etc"), overlays.host_path)
        run = "".join(f"{shlex.join(command)}\n" for command in commands) or "true\n"
    else:
        run = f"exec bash {shlex.quote(str(instance_dir / 'user-data'))}\n"
    return (
        "#!/usr/bin/env bash\n"
        f"# natlab boot of {instance_id}: run by `ip netns exec NS unshare -m -u`.\n"
        "set -o errexit -o nounset -o pipefail\n"
        f"{delay}"
        f"hostname {shlex.quote(hostname)}\n"
        "mount --make-rprivate /\n"
        f"{overlays.mount_commands()}"
        f"{disk.mount_commands()}"
        f"cd {shlex.quote(str(instance_dir))}\n"
        f"{run}"
    )
