"""The emulated internet's servers: run as a script inside the internet namespace (stdlib only).

    python inet_servers.py --address 203.0.113.10

- HTTP on :80 answers every GET with the client address it saw (one line, ``text/plain``): behind a
  NAT that is the NAT's public IP, which is how a test proves masquerading works.
- UDP echo on :7 sends every datagram back unchanged (the probes' sequence stream).
- TCP echo on :9000 echoes each line back and keeps the connection open (a long-lived flow whose fate
  across a failover the probes record).

Prints ``ready`` on stdout once all three sockets listen, then one line per HTTP request
(``http <client>``); runs until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTTP_PORT = 80
UDP_ECHO_PORT = 7
TCP_ECHO_PORT = 9000


class _WhoAmI(BaseHTTPRequestHandler):
    """Answer with the client address seen by this server."""

    def do_GET(self) -> None:
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"http {self.client_address[0]}", flush=True)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the one ``http <client>`` line per request is enough."""


class _LineEcho(socketserver.StreamRequestHandler):
    """Echo each line back until the client closes."""

    def handle(self) -> None:
        # A reset is how a flow through a replaced NAT may end (or a client closing with echoes unread).
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for line in self.rfile:
                self.wfile.write(line)
                self.wfile.flush()


class _TcpEchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # Hundreds of flows connect at once (flows.ManyFlows): the default backlog of 5 drops SYNs.
    request_queue_size = 1024


def _udp_echo(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="203.0.113.10")
    args = parser.parse_args(argv)

    http = ThreadingHTTPServer((args.address, HTTP_PORT), _WhoAmI)
    http.daemon_threads = True
    tcp = _TcpEchoServer((args.address, TCP_ECHO_PORT), _LineEcho)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.address, UDP_ECHO_PORT))
    threading.Thread(target=_udp_echo, args=(udp,), daemon=True).start()
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
