"""Counts the HTTP/1.1 requests in one client-to-server byte stream (what the relay forwards).

AWS clients (the CLI, signed curl) send one request per call on a kept-alive or fresh connection:
a request line, headers, then ``Content-Length`` bytes of body (EC2's query API is a form-encoded
POST). The framer follows exactly that and names each request by its API action (``Action=`` in
the form body, else the ``X-Amz-Target`` header, else method and path). Chunked bodies are not
modelled: AWS SDKs and the CLI do not send them for these APIs.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass

HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class HttpRequest:
    """One request seen on the wire."""

    action: str
    """API action (``ReplaceRoute``), or ``METHOD path`` when none is named."""
    time: float
    """``time.time()`` when its headers were complete."""


class RequestFramer:
    """Fed the bytes of one connection in order; ``requests`` lists every complete request header."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self._buffer = b""
        self._body_left = 0
        self._body = b""
        self._pending: tuple[str, str, dict[str, str]] | None = None
        self.broken = False

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream; a stream that is not HTTP/1.1 stops the count."""
        if self.broken:
            return
        self._buffer += data
        try:
            while self._step():
                pass
        except ValueError:  # e.g. a Content-Length that is not a number
            self.broken = True

    def _step(self) -> bool:
        """Consume one header block or body from the buffer; False when more bytes are needed."""
        if self._pending is not None:
            taken = self._buffer[: self._body_left]
            self._buffer = self._buffer[len(taken) :]
            self._body += taken
            self._body_left -= len(taken)
            if self._body_left > 0:
                return False
            method, path, headers = self._pending
            self._pending = None
            self.requests.append(HttpRequest(_action(method, path, headers, self._body), time.time()))
            self._body = b""
            return bool(self._buffer)
        end = self._buffer.find(HEADER_END)
        if end < 0:
            return False
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + len(HEADER_END) :]
        request_line, *header_lines = head.split("\r\n")
        method, path, *_ = [*request_line.split(" "), "", ""]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._body_left = int(headers.get("content-length") or 0)
        self._pending = (method, path, headers)
        return True


def _action(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    query = urllib.parse.urlsplit(path).query
    for form in (body.decode("latin-1"), query):
        action = urllib.parse.parse_qs(form).get("Action")
        if action:
            return action[0]
    target = headers.get("x-amz-target")
    return target.rsplit(".", 1)[-1] if target else f"{method} {urllib.parse.urlsplit(path).path}"
