"""What systemd would run at an instance's later start: the units its first boot enabled.

An instance started again (out of a warm pool, or rebooted) runs no user data: cloud-init runs that
once. What runs is every unit enabled in its ``/etc``, i.e. each ``<target>.wants/<unit>`` link the
first boot's ``systemctl enable`` left. The sandbox reads them from the instance's own ``/etc``
overlay upper dir (never the host's units) and runs each ``ExecStart=`` as systemd would: the
command split like a shell word list, without a shell, in order.

Modelled: ``ExecStart=`` of ``Type=oneshot``/``simple`` services, one per line, run one after the
other in link-name order. Not modelled: dependencies between units (``After=``), ``Environment*=``,
``ExecStartPre=`` and specifier expansion (``%i``): none of them appear in the module's unit.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

UNIT_DIR = "/etc/systemd/system"


def enabled_units(etc_upper: Path) -> list[str]:
    """Paths (as the instance sees them) of the units enabled in this ``/etc`` upper dir."""
    system = etc_upper / UNIT_DIR.removeprefix("/etc/")
    units = []
    for link in sorted(system.glob("*.wants/*")):
        if link.is_symlink():
            target = link.readlink()
            units.append(str(target if target.is_absolute() else Path(UNIT_DIR) / link.parent.name / target))
    return units


def exec_start(unit_text: str) -> list[list[str]]:
    """The commands of a unit's ``ExecStart=`` lines (systemd's ``-``/``@`` prefixes dropped)."""
    commands = []
    for line in unit_text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "ExecStart" and value.strip():
            words = shlex.split(value.strip())
            words[0] = words[0].lstrip("-@+!")
            commands.append(words)
    return commands


def start_commands(etc_upper: Path, host_path: Callable[[str], Path]) -> list[list[str]]:
    """Every command systemd would start at boot for this instance, in order."""
    commands = []
    for unit in enabled_units(etc_upper):
        path = host_path(unit)
        if path.exists():
            commands += exec_start(path.read_text())
    return commands
