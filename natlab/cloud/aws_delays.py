"""How long each step the ASG controller emulates takes on AWS: :class:`AwsDelays`, with the source of each figure.

:mod:`natlab.cloud.asg_controller` waits these; the lab and the tests pass them scaled down (:meth:`AwsDelays.fast`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class AwsDelays:
    """How long AWS takes for each step, in seconds. Tests pass small values.

    Defaults are AWS's own figures (documented or commonly observed), so a run with the defaults
    shows real-world failover times.
    """

    #: How often the controller looks at the groups (not an AWS figure).
    poll_interval: float = 0.2
    #: ASG EC2 health check noticing a stopped/stopping instance: observed 10-60 s.
    stopped_detection: float = 30.0
    #: Unhealthy -> TerminateInstance by the ASG: a few seconds.
    unhealthy_to_terminate: float = 5.0
    #: EC2 status checks run every minute; the first failed check lands within this.
    status_check_interval: float = 60.0
    #: Alarm evaluation after the first failed check; None = the alarm's Period x EvaluationPeriods.
    alarm_evaluation: float | None = None
    #: ASG EC2 health check acting on an impaired status without any alarm: "several minutes".
    impaired_detection: float = 300.0
    #: ABANDON -> termination by the ASG: a few seconds.
    abandon_to_terminate: float = 2.0
    #: Pending:Wait heartbeat timeout; None = the hook's HeartbeatTimeout (AWS default 3600 s).
    lifecycle_timeout: float | None = None
    #: Health checks are ignored this long after launch; None = the group's HealthCheckGracePeriod.
    grace_period: float | None = None
    #: Warm pool: the launch hook's CONTINUE -> instance stopped (an OS shutdown): estimate, a few seconds.
    warm_stop: float = 5.0
    #: A group below its desired capacity (a launch failed) tries again after this: estimate (AWS retries
    #: failed launches on its own, at intervals it does not document; seconds to a few minutes observed).
    launch_retry: float = 10.0

    @classmethod
    def fast(cls, scale: float = 0.01) -> AwsDelays:
        """AWS's figures scaled down (0.01: 30 s -> 0.3 s), with grace and hook timeouts too."""
        return cls(
            poll_interval=0.05,
            stopped_detection=30.0 * scale,
            unhealthy_to_terminate=5.0 * scale,
            status_check_interval=60.0 * scale,
            alarm_evaluation=120.0 * scale,
            impaired_detection=300.0 * scale,
            abandon_to_terminate=2.0 * scale,
            lifecycle_timeout=300.0 * scale,
            grace_period=0.0,
            warm_stop=5.0 * scale,
            launch_retry=10.0 * scale,
        )
