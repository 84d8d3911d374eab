"""The instance's private ``/etc``, ``/var/log``, ``/var/lib``, ``/run``, ``/usr/local/sbin``: overlays on its own dir.

The boot wrapper mounts, in the instance's private mount namespace, an overlay on each of
``OVERLAID`` with the host's directory as the lower layer and ``<instance dir>/upper/<dir>`` as the
upper one. What the boot script writes (nftables rules, sysctl files, its log, the install's swap
file under ``/var/lib``) is then a file under ``upper/``, and the host's directories are never
touched. The image (``image.py``) adds the command directories its packages live in (``/usr/sbin``):
a package the image lacks is deleted there (a whiteout in ``upper/``), one dnf installs is written
there.

Rootless (the harness in a user namespace), the host's directories belong to an unmapped owner and
the namespace's root may not create files in them; ``mirror_directories`` works around that.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from pathlib import Path

#: /usr/local/sbin: where the boot script keeps itself for later starts (its systemd unit runs it).
OVERLAID = ("/etc", "/var/log", "/var/lib", "/usr/local/sbin")
#: A real instance's own tmpfs (the takeover watcher keeps the zones it covers there). Mounted last:
#: the other overlays' dirs may live below it. Not when the instance dir itself is below /run: that
#: is a rootless run (scripts/rootless.sh), whose /run is already a private tmpfs, not the host's.
RUN = "/run"
#: Where the boot script writes below the top level: rootless, these need ``mirror_directories``.
MIRRORED = ("/etc", "/var/log")


class Overlays:
    """The overlays of one instance dir: ``upper/<dir>`` and ``work/<dir>`` for each of ``mountpoints``."""

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        own_run = () if str(root).startswith(RUN + "/") else (RUN,)
        self.mountpoints = OVERLAID + tuple(m for m in extra if m not in OVERLAID) + own_run

    def upper(self, mountpoint: str) -> Path:
        """The upper dir standing for ``mountpoint`` (one of ``mountpoints``)."""
        return self.root / "upper" / mountpoint.strip("/")

    def work(self, mountpoint: str) -> Path:
        return self.root / "work" / mountpoint.strip("/")

    def prepare(self) -> None:
        """Creates the upper and work dirs (with the lower directories when rootless)."""
        for mountpoint in self.mountpoints:
            self.upper(mountpoint).mkdir(parents=True, exist_ok=True)
            self.work(mountpoint).mkdir(parents=True, exist_ok=True)
            if mountpoint in MIRRORED and in_user_namespace():
                mirror_directories(Path(mountpoint), self.upper(mountpoint))

    def mount_commands(self) -> str:
        """The shell lines that mount every overlay (run in the instance's mount namespace)."""
        lines = []
        for mountpoint in self.mountpoints:
            options = f"lowerdir={mountpoint},upperdir={self.upper(mountpoint)},workdir={self.work(mountpoint)}"
            lines.append(f"mount -t overlay overlay -o {shlex.quote(options)} {mountpoint}\n")
        return "".join(lines)

    def host_path(self, path: str) -> Path:
        """Where a file the instance writes at ``path`` lands on the host."""
        for mountpoint in self.mountpoints:
            if path.startswith(mountpoint + "/"):
                return self.upper(mountpoint) / path[len(mountpoint) + 1 :]
        return Path(path)

    def changes(self, mountpoint: str) -> dict[str, str | None]:
        """Files written under ``mountpoint``: relative path -> content (None: deleted)."""
        upper = self.upper(mountpoint)
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
