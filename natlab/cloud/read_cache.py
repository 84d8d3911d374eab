"""Reads of the in-process emulator answered again from memory while nothing has changed it.

The lab reads moto all the time: the fleet and the health controller at 5 Hz, the router at 2-20 Hz,
every scenario's wait loops. Each read costs 4-7 ms of this process's CPU (boto3 builds and parses
the request and its XML answer, moto renders it), and almost every one returns what the last did.
:class:`~natlab.cloud.serial_wsgi.SerializedWsgi` counts the requests that may change moto (all but
``Describe*``/``List*``/``Get*``); a client of that emulator answers a repeated read from memory
while the count is the same as when its answer was fetched, i.e. no change was served since.

Why that is the same answer: moto serves one request at a time, so a read answered from memory is
the read moto would have served at that moment. Only the operations in :data:`CACHED` are kept:
their answers are moto's models alone (no wall clock, no harness registry such as the warm pools).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

#: Operations answered from memory, per botocore service id (their answers depend on moto's models only).
CACHED: dict[str, frozenset[str]] = {
    "ec2": frozenset(
        {
            "DescribeInstances",
            "DescribeRouteTables",
            "DescribeNetworkInterfaces",
            "DescribeAddresses",
            "DescribeSubnets",
            "DescribeVpcs",
        }
    ),
    "auto-scaling": frozenset({"DescribeAutoScalingGroups"}),
}
#: Request names that never change the emulator's state.
READ_PREFIXES = ("Describe", "List", "Get")
#: Off: every read goes to moto (bench/lab_poll_cost.py measures both).
ENABLED = True
_CHANGES_SEEN = "natlab_changes_seen"
_KEY = "natlab_cache_key"


class ReadCache:
    """Per client: the last answer to each cached read, with the emulator's change count it was fetched at."""

    def __init__(self, changes: Callable[[], int]) -> None:
        self.changes = changes
        self.hits = 0
        self.misses = 0
        self._answers: dict[tuple[str, ...], tuple[int, Any, Any]] = {}
        self._lock = threading.Lock()

    def install(self, client: Any) -> None:
        """Hooks into ``client`` (botocore's before-call/after-call events) for the operations in CACHED."""
        service = client.meta.service_model.service_id.hyphenize()
        for operation in CACHED.get(service, ()):
            client.meta.events.register(f"before-call.{service}.{operation}", self._before_call)
            client.meta.events.register(f"after-call.{service}.{operation}", self._after_call)

    def _before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        if not ENABLED:
            return None
        key = (model.name, repr(params.get("url_path")), repr(params.get("query_string")), repr(params.get("body")))
        now = self.changes()
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and kept[0] == now:
            self.hits += 1
            return kept[1], copy.deepcopy(kept[2])  # the caller may change what it gets
        self.misses += 1
        # Taken before the request: a change served meanwhile makes this answer stale at once.
        context[_CHANGES_SEEN], context[_KEY] = now, key
        return None

    def _after_call(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        if _KEY not in context or getattr(http_response, "status_code", 500) != 200:
            return
        with self._lock:
            self._answers[context[_KEY]] = (context[_CHANGES_SEEN], http_response, copy.deepcopy(parsed))


def is_read(operation: str) -> bool:
    """Whether a request of this name only reads (moto changes nothing for it)."""
    return operation.startswith(READ_PREFIXES)
