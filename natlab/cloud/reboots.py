"""Which instances RebootInstances restarted (moto's fix records, the fleet reads) and how long a reboot takes.

A reboot on EC2 is an OS reboot: the instance keeps its id, ENIs, MAC, private IP, EBS root volume
and the EC2 state ``running``; it loses what lived in kernel memory (nftables rules,
``net.ipv4.ip_forward``, conntrack, processes). cloud-init does not run the user data again;
systemd starts the enabled units. The fleet (``fleet.py``) models exactly that: it ends the
instance's sandbox (processes and network namespace, i.e. the kernel state), keeps its instance dir
(the disk), and boots it again from its enabled units after ``REBOOT_SECONDS``, scaled like the
lab's other AWS delays.
"""

from __future__ import annotations

import threading

#: RebootInstances -> the instance's enabled units start again: an OS shutdown and boot, without
#: RunInstances or placement. AL2023 on Nitro: tens of seconds (an estimate: no published figure;
#: a launch is ~26-29 s to user data, shared/AWS-NOTES.md "Boot", of which ~1.5-5 s is the launch).
REBOOT_SECONDS = 30.0


class RebootRegistry:
    """Thread-safe count of the reboots each instance got (moto's RebootInstances, through its fix)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def note(self, instance_id: str) -> None:
        with self._lock:
            self._counts[instance_id] = self._counts.get(instance_id, 0) + 1

    def count(self, instance_id: str) -> int:
        """How often ``instance_id`` was rebooted so far."""
        with self._lock:
            return self._counts.get(instance_id, 0)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


REBOOTS = RebootRegistry()
