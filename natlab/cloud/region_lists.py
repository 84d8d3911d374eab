"""boto3's region lists, read once per process instead of by every new session (process-wide, on import).

When ``moto.ec2.models`` is imported it lists EC2's regions three times (partitions aws, aws-us-gov,
aws-cn), each through a new ``boto3.Session()``, and each new session loads EC2's multi-megabyte
service model to find its endpoint prefix: 0.3 s of the 1.2 s it took to import the harness's
plugin, paid by the pytest process, every xdist worker and every sub-pytest a test runs. A list
is botocore's data, the same for every session of the process: one session answers them all (it
loads the model once) and each answer is kept.
``natlab.pytest_plugin`` imports this module before anything that imports moto's EC2 models.
"""

from __future__ import annotations

import functools
from typing import Any

from boto3.session import Session

_original = Session.get_available_regions


@functools.cache
def _session() -> Session:
    return Session()


@functools.cache
def _regions(service_name: str, partition_name: str, allow_non_regional: bool) -> tuple[str, ...]:
    return tuple(_original(_session(), service_name, partition_name, allow_non_regional))


def _remembered(
    self: Any, service_name: str, partition_name: str = "aws", allow_non_regional: bool = False
) -> list[str]:
    return list(_regions(service_name, partition_name, allow_non_regional))


Session.get_available_regions = _remembered  # type: ignore[method-assign]
