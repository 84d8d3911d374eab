"""The one way the harness waits: poll a probe under a deadline, with backoff, until it answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: What a probe raises to say "not yet" (an assertion about the state, or a lookup that found nothing).
NOT_YET: tuple[type[BaseException], ...] = (AssertionError, LookupError)


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    max_interval: float | None = None,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """Calls ``probe`` until it returns something other than None or False, and returns that.

    A probe says "not yet" by returning None/False or by raising one of ``retry_on``. Between calls
    it sleeps ``interval`` s, doubled each time up to ``max_interval`` (no backoff when None). After
    ``timeout`` s it raises ``TimeoutError`` naming ``what``, chained from the probe's last error.
    Any other exception from the probe propagates at once.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except retry_on as error:
            last_error, result = error, None
        if result is not None and result is not False:
            return result
        if time.monotonic() + delay > deadline:
            reason = f": {last_error}" if last_error is not None else ""
            raise TimeoutError(f"no {what} after {timeout:.1f} s{reason}") from last_error
        time.sleep(delay)
        if max_interval is not None:
            delay = min(delay * 2, max_interval)
