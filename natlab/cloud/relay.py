"""A TCP relay from inside a namespace to the host's loopback (the instance's way to the emulator).

The listening socket is created inside the namespace (``Namespace.listen_socket``); the accept and
pump threads run in the host namespace, so each accepted connection is forwarded by an ordinary
``connect()`` to ``127.0.0.1:<port>`` on the host. The target must be a loopback address.
Every HTTP request passing from the namespace to the target is counted (``requests``): the API
calls an instance's user data made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from typing import Self

from natlab.resource import Resource

from .http_requests import HttpRequest, RequestFramer
from .netns import Namespace

log = logging.getLogger(__name__)

BUFSIZE = 65536
CONNECT_TIMEOUT = 5.0


class TcpRelay(Resource):
    """Listen on ``listen_host:listen_port`` inside ``ns``; pump each connection to the host target.

    A ``Resource``. ``connections`` counts accepted connections, ``requests`` lists the HTTP requests
    sent through them; ``close()`` stops accepting and closes every open connection.
    """

    def __init__(
        self,
        ns: Namespace,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        listen_host: str = "127.0.0.1",
        listen_port: int = 4566,
    ) -> None:
        if not ipaddress.ip_address(target_host).is_loopback:
            raise ValueError(f"relay target must be a loopback address, not {target_host}")
        self.ns = ns
        self.target = (target_host, target_port)
        self.listen_address = (listen_host, listen_port)
        self.connections = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._framers: list[RequestFramer] = []

    @property
    def requests(self) -> list[HttpRequest]:
        """HTTP requests relayed so far, in time order (kept after ``close()``)."""
        with self._lock:
            framers = list(self._framers)
        return sorted((r for f in framers for r in f.requests), key=lambda r: r.time)

    def start(self) -> Self:
        """Bind inside the namespace and start accepting."""
        self._listener = self.ns.listen_socket(*self.listen_address)
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"relay-{self.ns.name}", daemon=True)
        self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, close all relayed connections. Idempotent."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2)
            self._accept_thread = None
        with self._lock:
            socks, self._open = list(self._open), set()
        for sock in socks:
            _close(sock)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._open.add(sock)
            return True

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        _close(sock)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                break  # listener shut down
            if not self._track(client):
                _close(client)
                break
            self.connections += 1
            threading.Thread(
                target=self._serve, args=(client,), daemon=True, name=f"relay-conn-{self.connections}"
            ).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            log.warning("relay %s: cannot reach %s:%d: %s", self.ns.name, *self.target, exc)
            self._untrack(client)
            return
        upstream.settimeout(None)
        if not self._track(upstream):
            _close(upstream)
            self._untrack(client)
            return
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        framer = RequestFramer()
        with self._lock:
            self._framers.append(framer)
        self._pump(client, upstream, framer)
        back.join()
        self._untrack(client)
        self._untrack(upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, framer: RequestFramer | None = None) -> None:
        """Copy src -> dst until EOF, then half-close dst so the other side sees EOF too."""
        try:
            while data := src.recv(BUFSIZE):
                if framer is not None:
                    framer.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
