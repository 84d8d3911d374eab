"""One request at a time into moto, and every answer of 500 or more logged.

moto's models are not thread-safe, and its server answers each request on its own thread. The lab
calls it from many threads at once (Terraform's provider, every instance's boot script, the fleet,
the health controller, the route sync): a response serialised while another thread changes the same
dict fails with HTTP 500 *after* the change was made. The provider then retries a call that had
worked: CI once got two VPCs from one ``CreateVpc`` and a ``RevokeSecurityGroupEgress`` that found
its rule already gone. A request takes milliseconds, so running them one at a time costs little.

It also counts the requests that may have changed moto (all but ``Describe*``/``List*``/``Get*``):
clients of this process answer a repeated read from memory while that count stands
(:mod:`natlab.cloud.read_cache`). :func:`changes_at` finds the count of the emulator at an endpoint.
"""

from __future__ import annotations

import io
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from natlab.cloud.read_cache import is_read

logger = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Endpoint URL -> the wrapper serving it in this process (see :func:`serving`).
_SERVING: dict[str, SerializedWsgi] = {}


class SerializedWsgi:
    """Wraps a WSGI app: one request at a time, the whole body produced under the lock."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        #: Requests served so far that may have changed moto's state.
        self.changes = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status_seen: list[str] = []

        def noting_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            status_seen.append(status)
            return start_response(status, headers, *exc_info)

        changing = not _only_reads(environ)
        with self._lock:
            try:
                body = list(self.app(environ, noting_start_response))
            finally:
                self.changes += changing
        if status_seen and status_seen[-1][:1] == "5":
            logger.warning(
                "emulator answered %s to %s %s (%s)",
                status_seen[-1],
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                environ.get("HTTP_X_AMZ_TARGET") or environ.get("HTTP_USER_AGENT", "")[:60],
            )
        return body


def _only_reads(environ: dict[str, Any]) -> bool:
    """Whether the request names a read (its body is read and put back for the app)."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:  # JSON protocols: "Service_Version.Operation"
        return is_read(target.rsplit(".", 1)[-1])
    path = environ.get("PATH_INFO", "")
    if "/operation/" in path:  # Smithy RPC v2: /service/<name>/operation/<name>
        return is_read(path.rsplit("/", 1)[-1])
    form = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > 0:
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form |= urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    action = form.get("Action", [""])[0]
    return is_read(action) if action else environ.get("REQUEST_METHOD") in ("GET", "HEAD")


def serving(endpoint_url: str, app: SerializedWsgi | None) -> None:
    """Records (or, with None, forgets) the wrapper that serves ``endpoint_url`` in this process."""
    if app is None:
        _SERVING.pop(endpoint_url, None)
    else:
        _SERVING[endpoint_url] = app


def changes_at(endpoint_url: str | None) -> Callable[[], int] | None:
    """The change count of the emulator this process serves at ``endpoint_url`` (None: not one of ours)."""
    app = _SERVING.get(endpoint_url or "")
    return None if app is None else (lambda: app.changes)
