"""What an emulated instance's image holds: the profile's packages, the lab's repository, dnf's time and faults.

The instance sandbox runs on this machine, which has tools the real image lacks (``nft`` above all).
An ``Image`` makes the instance see its profile's software and nothing more:

* ``al2023`` is the standard Amazon Linux 2023 AMI as documented (bash, curl, the AWS CLI, iproute,
  procps, systemd, coreutils, gawk, sed, grep, util-linux) with no nftables, iptables or
  conntrack-tools (shared AWS notes, "The image": very likely absent, to be verified once);
  ``baked`` is that plus nftables, what the Packer recipe (``packer/al2023-nat.pkr.hcl``) builds.
* A package the instance lacks is really absent inside it: the directories holding the host's files
  of every package in ``KNOWN_PACKAGES`` get an overlay in the instance's mount namespace, and the
  boot wrapper deletes the missing packages' files in it (overlay whiteouts). ``command -v nft``
  then fails and ``/usr/sbin/nft`` answers bash's "No such file or directory" (127), as on the image.
* The instance's "disk" is ``<instance dir>/image``: ``rpmdb`` (installed packages, one a line; what
  the ``rpm -q`` shim answers from), ``repo/`` (the host's files of each package the image lacks,
  copied at first boot: what ``dnf install`` puts in place) and the fake ``/proc/meminfo`` and
  ``/proc/swaps`` of the instance type. All of it survives a stop and start of the instance.
* ``DnfModel`` says how long ``dnf install`` takes and how it fails; the ``dnf`` shim reads it from
  the instance's environment.

Figures: ``dnf install nftables`` takes "tens of seconds on one burstable vCPU with cold EBS blocks"
(shared AWS notes, "The image"; an estimate, no public figure): the lab models 30 s, scaled like the
lab's other AWS waits (x 0.01, ``AwsDelays.fast``) to 0.3 s, and scales the boot script's own
install timeout and retry pause by the same factor so their ratio to the install stays real. A
t4g.nano has 512 MiB; the kernel reports less as MemTotal (its own reservations): the lab writes
92 % of it (estimate) and no swap (the AMI has none configured; estimate).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from natlab.module.userdata import BOOT_SCRIPT_PATH

#: Packages of the standard AL2023 AMI the boot script relies on (AL2023 user guide, "Comparing AL2 and
#: AL2023"). Their files are the host's and stay visible; they are listed for ``rpm -q``.
AL2023_PACKAGES = (
    "bash",
    "curl-minimal",
    "awscli-2",
    "iproute",
    "procps-ng",
    "systemd",
    "coreutils",
    "gawk",
    "sed",
    "grep",
    "util-linux",
)

#: Packages the lab can install: name -> the file names it puts in the system's command directories.
#: Patterns, matched against the host's files (Debian names; the iptables family shares one binary).
KNOWN_PACKAGES: dict[str, tuple[str, ...]] = {
    "nftables": ("nft",),
    "iptables": ("iptables*", "ip6tables*", "xtables-*", "arptables*", "ebtables*"),
    "conntrack-tools": ("conntrack", "conntrackd", "nfct"),
}
COMMAND_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass(frozen=True)
class ImageProfile:
    """One image: its name, what it is, and the packages it ships."""

    name: str
    summary: str
    packages: tuple[str, ...]


PROFILES = {
    "al2023": ImageProfile(
        "al2023", "Amazon Linux 2023 standard AMI: no nftables, iptables or conntrack-tools", AL2023_PACKAGES
    ),
    "baked": ImageProfile("baked", "al2023 + nftables (packer/al2023-nat.pkr.hcl)", (*AL2023_PACKAGES, "nftables")),
}
IMAGE_PROFILES = tuple(PROFILES)
DEFAULT_PROFILE = "al2023"

DNF_FAULTS = ("none", "fail", "hang", "oom")
#: Modelled seconds of one ``dnf install nftables`` on AWS (estimate: "tens of seconds", see above).
DNF_INSTALL_SECONDS = 30.0
#: The lab's scale for AWS's waits (``AwsDelays.fast``): 30 s on AWS -> 0.3 s in the lab.
LAB_SCALE = 0.01


def _script_default(variable: str) -> float:
    """The default the boot script gives ``${variable:-N}``: one source for the figure."""
    match = re.search(rf"\$\{{{variable}:-(\d+(?:\.\d+)?)\}}", BOOT_SCRIPT_PATH.read_text())
    if match is None:
        raise LookupError(f"{BOOT_SCRIPT_PATH} has no default for {variable}")
    return float(match[1])


@dataclass(frozen=True)
class DnfModel:
    """How ``dnf install`` behaves in one instance: its time (AWS seconds x ``scale``) and its fault.

    ``fault``: ``fail`` exits 1 with a dnf-like error, ``hang`` sleeps until killed, ``oom`` is
    SIGKILLed (exit 137) as by the kernel's OOM killer. ``fault_attempts``: only the first N calls
    of the instance fault (0: every call).
    """

    fault: str = "none"
    fault_attempts: int = 0
    scale: float = LAB_SCALE

    def __post_init__(self) -> None:
        if self.fault not in DNF_FAULTS:
            raise ValueError(f"dnf fault must be one of {', '.join(DNF_FAULTS)}, got {self.fault!r}")
        if self.fault_attempts < 0:
            raise ValueError(f"dnf fault_attempts must be 0 (every call) or more, got {self.fault_attempts}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"dnf scale must be more than 0 and at most 1, got {self.scale}")

    def environment(self) -> dict[str, str]:
        """What the ``dnf`` shim and the boot script's install read."""
        return {
            "NATLAB_DNF_SECONDS": f"{DNF_INSTALL_SECONDS * self.scale:g}",
            "NATLAB_DNF_FAULT": self.fault,
            "NATLAB_DNF_FAULT_ATTEMPTS": str(self.fault_attempts),
            "NAT_DNF_TIMEOUT": f"{_script_default('NAT_DNF_TIMEOUT') * self.scale:g}",
            "NAT_DNF_RETRY_PAUSE": f"{_script_default('NAT_DNF_RETRY_PAUSE') * self.scale:g}",
        }


@dataclass(frozen=True)
class Image:
    """The image an instance boots from, with the dnf it finds and the memory of its instance type."""

    profile: str = DEFAULT_PROFILE
    dnf: DnfModel = field(default_factory=DnfModel)
    memory_mib: int = 512  # t4g.nano, the module's default instance type

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"image profile must be one of {', '.join(IMAGE_PROFILES)}, got {self.profile!r}")
        if self.memory_mib < 64:
            raise ValueError(f"image memory_mib must be at least 64, got {self.memory_mib}")

    def disk(self, instance_dir: Path) -> InstanceDisk:
        return InstanceDisk(self, instance_dir / "image")


class InstanceDisk:
    """One instance's packages, repository and fake /proc files, under ``<instance dir>/image``."""

    def __init__(self, image: Image, root: Path) -> None:
        self.image = image
        self.root = root

    @property
    def rpmdb(self) -> Path:
        return self.root / "rpmdb"

    def repo(self, package: str) -> Path:
        return self.root / "repo" / package

    def installed(self) -> list[str]:
        """Packages on the instance's disk (the profile's, then what dnf installed)."""
        try:
            return self.rpmdb.read_text().split()
        except FileNotFoundError:
            return list(PROFILES[self.image.profile].packages)

    def missing_files(self) -> list[str]:
        """The host's files of every known package the instance does not have: hidden inside it."""
        installed = set(self.installed())
        return [path for name in KNOWN_PACKAGES if name not in installed for path in host_files(name)]

    def overlay_dirs(self) -> list[str]:
        """Directories an install may write to: overlaid so that it lands in the instance dir."""
        return sorted({str(Path(path).parent) for name in KNOWN_PACKAGES for path in host_files(name)})

    def prepare(self) -> None:
        """First boot: the package db and the repository; every boot: /proc files of the instance type."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.rpmdb.exists():
            self.rpmdb.write_text("".join(f"{name}\n" for name in PROFILES[self.image.profile].packages))
        installed = set(self.installed())
        for name in KNOWN_PACKAGES:
            if name not in installed and not (self.root / "repo" / f"{name}.files").exists():
                self._copy_to_repo(name)
        (self.root / "meminfo").write_text(fake_meminfo(self.image.memory_mib))
        (self.root / "swaps").write_text(SWAPS_HEADER)

    def _copy_to_repo(self, name: str) -> None:
        """The host's files of ``name`` (symlinks as symlinks), and their list: what dnf installs."""
        files = host_files(name)
        (self.root / "repo").mkdir(exist_ok=True)
        for path in files:
            target = self.repo(name) / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target, follow_symlinks=False)
        (self.root / "repo" / f"{name}.files").write_text("".join(f"{path}\n" for path in files))

    def mount_commands(self) -> str:
        """Wrapper lines, run after the overlays: the instance type's /proc files, missing packages gone."""
        lines = [
            f"mount --bind {shlex.quote(str(self.root / 'meminfo'))} /proc/meminfo\n",
            f"mount --bind {shlex.quote(str(self.root / 'swaps'))} /proc/swaps\n",
        ]
        missing = self.missing_files()
        if missing:
            lines.append("rm -f -- " + " ".join(shlex.quote(path) for path in missing) + "\n")
        return "".join(lines)

    def environment(self) -> dict[str, str]:
        return {"NATLAB_IMAGE_DIR": str(self.root)} | self.image.dnf.environment()


def host_files(package: str) -> list[str]:
    """Paths of ``package``'s files on this machine, each once (``/sbin`` may be ``/usr/sbin``)."""
    found: dict[str, None] = {}
    for directory in dict.fromkeys(os.path.realpath(d) for d in COMMAND_DIRS):
        base = Path(directory)
        for pattern in KNOWN_PACKAGES[package]:
            for path in sorted(base.glob(pattern)):
                if path.is_symlink() or path.is_file():
                    found[str(path)] = None
    return list(found)


SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def fake_meminfo(memory_mib: int) -> str:
    """The host's /proc/meminfo with the instance type's memory and no swap (see the module docstring)."""
    total = memory_mib * 1024 * 92 // 100
    values = {"MemTotal": total, "SwapTotal": 0, "SwapFree": 0}
    lines = []
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        number = int(rest.split()[0]) if rest.split() and rest.split()[0].isdigit() else None
        if key in values:
            number = values[key]
        elif key in ("MemFree", "MemAvailable") and number is not None:
            number = min(number, total // 2)
        lines.append(f"{key}:{number:>16} kB" if number is not None and rest.strip().endswith("kB") else line)
    return "\n".join(lines) + "\n"
