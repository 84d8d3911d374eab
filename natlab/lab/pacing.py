"""How fast a lab's emulated cloud runs: how often its parts poll the emulator, and AWS's delays scaled down."""

from __future__ import annotations

import dataclasses

from natlab.cloud.aws_delays import AwsDelays
from natlab.cloud.reboots import REBOOT_SECONDS

# How often the emulated cloud's parts look at the emulator. Every look is a few API calls, and
# moto spends 4-7 ms of this process's CPU on each: polling at 20-50 Hz all the time, an idle
# one-zone lab used 0.86 CPU-seconds a second (route sync 0.54, fleet 0.23, health controller 0.2)
# of this 2-core machine. The fleet and the controller poll at their own defaults (5 Hz): a launch
# boots, and a stopped or impaired NAT is acted on after its (scaled) AWS delay, within 0.2 s more.
# The router syncs at 20 Hz while a scenario watches (``Lab.watching_closely``: a route change is
# in its kernel within tens of milliseconds, as measured in the failover figures), at 2 Hz otherwise.
ROUTE_SYNC_INTERVAL = 0.05
ROUTE_SYNC_IDLE_INTERVAL = 0.5
FLEET_POLL_INTERVAL = 0.2

#: AWS's health-check, status-check and alarm delays scaled down 50x (30 s -> 0.6 s), so the fault
#: matrix runs in seconds; boot time is modelled separately (--boot-delay).
#: The launch hook's heartbeat is not scaled: boots run in real time.
AWS_DELAY_SCALE = 0.02
CONTROLLER_DELAYS = dataclasses.replace(AwsDelays.fast(AWS_DELAY_SCALE), poll_interval=0.2, lifecycle_timeout=None)
#: A reboot's OS shutdown and boot (``reboots.REBOOT_SECONDS``, 30 s, an estimate), scaled the same: 0.6 s.
REBOOT_DELAY = REBOOT_SECONDS * AWS_DELAY_SCALE
