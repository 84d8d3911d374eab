"""The aws provider's two costly, unchanging answers, given once per lab instead of once per walk.

Terraform asks the provider for its schema at every command (~1 CPU-s: ~1,500 resource types),
and asks it to validate its own ``provider`` block at every walk (validate, plan, apply; destroy
and plan refresh too): the SDK then checks its whole schema again (``InternalValidate``, ~1.3
CPU-s). A lab's apply, plan and destroy asked 3 and 8 times for the same two answers: 3.6 CPU-s of
a 4.5 s plan of a one-VPC workdir, 7.3 of an 8.1 s destroy.

:class:`ProviderAnswers` is a gRPC relay between Terraform and the lab's one provider process
(:class:`natlab.lab.provider_process.ProviderProcess`): every call goes through to the provider, except
that ``GetSchema`` and ``PrepareProviderConfig`` (protocol 5's names) are answered with the
provider's own reply to the same request bytes, once it has given one. Resources are validated,
read, planned and applied by the provider at every command as before.

go-plugin's stdio and broker streams are answered UNIMPLEMENTED, as by a plugin without them:
Terraform uses neither with a provider, and a relayed stream would hold a thread per command.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, Self

import grpc

from natlab.resource import Resource

logger = logging.getLogger(__name__)

#: Answered from the provider's first reply to the same request: the same for the provider's life.
ANSWERED_ONCE = frozenset({"/tfplugin5.Provider/GetSchema", "/tfplugin5.Provider/PrepareProviderConfig"})
#: go-plugin's streams, not relayed (see the module's docstring).
NOT_RELAYED = frozenset({"/plugin.GRPCStdio/StreamStdio", "/plugin.GRPCBroker/StartStream"})
#: The schema is ~5 MB, above gRPC's 4 MB default; go-plugin sets no limit.
MESSAGE_LIMITS = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]
#: Terraform runs up to 10 operations at once (-parallelism), each one call at a time.
THREADS = 16


class ProviderAnswers(Resource):
    """Relays Terraform's calls to the provider that ``reattach`` (its TF_REATTACH_PROVIDERS) names.

    ``reattach`` after ``start()``: the same config pointing at this relay instead.
    """

    def __init__(self, reattach: str) -> None:
        self.provider_reattach = reattach
        self.reattach: str | None = None
        self.answered = 0
        """Calls answered from a kept reply."""
        self.relayed = 0
        self._kept: dict[tuple[str, bytes], bytes] = {}
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._channel: grpc.Channel | None = None
        self._server: grpc.Server | None = None

    def start(self) -> Self:
        config = json.loads(self.provider_reattach)
        (provider,) = config.values()
        if provider["Addr"]["Network"] != "unix":
            raise ValueError(f"the provider serves on {provider['Addr']}, not a unix socket")
        self._channel = grpc.insecure_channel(f"unix:{provider['Addr']['String']}", options=MESSAGE_LIMITS)
        self._folder = Path(tempfile.mkdtemp(prefix="natlab-provider-"))
        socket = self._folder / "relay.sock"
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="tf-provider-relay"),
            handlers=[_Relay(self)],
            options=MESSAGE_LIMITS,
        )
        self._server.add_insecure_port(f"unix:{socket}")
        self._server.start()
        provider["Addr"]["String"] = str(socket)
        self.reattach = json.dumps(config)
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def call(self, method: str, request: bytes) -> bytes:
        """``method`` on the provider, or its kept reply to the same ``request`` for the ANSWERED_ONCE ones."""
        assert self._channel is not None, "relay not started"
        key = (method, request)
        if method in ANSWERED_ONCE:
            with self._lock:
                kept = self._kept.get(key)
                self.answered += kept is not None
            if kept is not None:
                return kept
        reply: bytes = self._channel.unary_unary(method)(request)
        with self._lock:
            self.relayed += 1
            if method in ANSWERED_ONCE:
                self._kept[key] = reply
        return reply


class _Relay(grpc.GenericRpcHandler):
    """Every unary call (requests and replies kept as bytes: nothing is decoded) to :meth:`ProviderAnswers.call`."""

    def __init__(self, answers: ProviderAnswers) -> None:
        self.answers = answers

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method in NOT_RELAYED:
            return None  # UNIMPLEMENTED
        return grpc.unary_unary_rpc_method_handler(self._relay(method))

    def _relay(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def relay(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return self.answers.call(method, request)
            except grpc.RpcError as error:  # the provider's own status, passed on
                context.abort(error.code(), error.details() or "")

        return relay
