"""One request at a time into moto, and every answer of 500 or more logged.

moto's models are not thread-safe, and its server answers each request on its own thread. The lab
calls it from many threads at once (Terraform's provider, every instance's boot script, the fleet,
the health controller, the route sync): a response serialised while another thread changes the same
dict fails with HTTP 500 *after* the change was made. The provider then retries a call that had
worked: CI once got two VPCs from one ``CreateVpc`` and a ``RevokeSecurityGroupEgress`` that found
its rule already gone. A request takes milliseconds, so running them one at a time costs little.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedWsgi:
    """Wraps a WSGI app: one request at a time, the whole body produced under the lock."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status_seen: list[str] = []

        def noting_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            status_seen.append(status)
            return start_response(status, headers, *exc_info)

        with self._lock:
            body = list(self.app(environ, noting_start_response))
        if status_seen and status_seen[-1][:1] == "5":
            logger.warning(
                "emulator answered %s to %s %s (%s)",
                status_seen[-1],
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                environ.get("HTTP_X_AMZ_TARGET") or environ.get("HTTP_USER_AGENT", "")[:60],
            )
        return body
