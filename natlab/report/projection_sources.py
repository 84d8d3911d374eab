"""Where each figure of the real-AWS projection comes from (docs/latency-model.md has the long form).

A figure names one of these keys; a key that is not here is rejected, so no number enters the model
without a source or the word "estimate".
"""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "ec2-status": "Amazon EC2 User Guide, 'Status checks for Amazon EC2 instances' "
    "(docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-system-instance-status-check.html): "
    "status checks are performed every minute.",
    "asg-impaired": "Amazon EC2 Auto Scaling User Guide, 'Health checks for instances in an Auto "
    "Scaling group' (docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html): "
    "for impaired status checks the group 'waits a few minutes for AWS to fix the problem' before "
    "marking the instance unhealthy; 'a few minutes' is read as 2-5 min (estimate).",
    "asg-maintenance": "Amazon EC2 Auto Scaling User Guide, 'Instance maintenance policies': with "
    "min 100 % / max 200 % healthy, a replacement is launched before the unhealthy instance is "
    "terminated, so termination adds no wait.",
    "asg-health": "Amazon EC2 Auto Scaling User Guide, 'Health checks for instances in an Auto "
    "Scaling group' (docs.aws.amazon.com/autoscaling/ec2/userguide/healthcheck.html): an instance "
    "that terminates unexpectedly, or is in a state other than running, is replaced; no detection "
    "delay is published, so the range is an estimate.",
    "asg-replace": "Amazon EC2 Auto Scaling User Guide, 'View the reason for health check "
    "failures' (docs.aws.amazon.com/autoscaling/ec2/userguide/replace-unhealthy-instance.html): "
    "while the unhealthy instance terminates, another scaling activity launches its replacement.",
    "asg-warm-pool": "Amazon EC2 Auto Scaling User Guide, 'Warm pools for Amazon EC2 Auto Scaling': "
    "a scale-out or replacement takes a pre-initialized instance from the pool and, when the pool "
    "keeps it Stopped, starts it; the launch hook fires again on the way to InService. No delay is "
    "published for taking an instance from the pool (estimate: as for a launch).",
    "boot-bench": "Public EC2 boot benchmarks: Colin Percival, 'EC2 boot time benchmarking' "
    "(daemonology.net, 2021: RunInstances call 1.5 s, pending to running 4.9 s, then 17.2 s until "
    "port 22 answers closed and 5.6 s more until sshd listens: ~23 s from running); "
    "brevdev/ec2-coldboot-research on GitHub (cold launch to SSH 25.8 s on average); Marty Sweet, "
    "'EC2 Launch Times' (martysweet.co.uk, 2023: Amazon Linux 2023 boots fastest; EBS encryption "
    "slows launches); one t4g.nano pending to running in ~8 s (shared/AWS-NOTES.md). sshd "
    "listening stands in for the start of user data: nobody measures the latter.",
    "seed": "The seed blog post, 'AWS - autoscaling and self healing NAT instance' (2015, "
    "shared/seeds): 'a new replacement NAT is put into service in about 3 minutes'.",
    "fck-nat": "fck-nat documentation, 'Limitations' (fck-nat.dev/stable/limitations): in HA mode "
    "the group takes '~5 minutes' to bring up a replacement instance.",
    "measured": "Measured by this harness on the emulator (the boot script's step times).",
    "estimate": "Engineering estimate; no published figure found. Replace with a measurement "
    "from a real-AWS run when one exists.",
}
