"""The relay between Terraform and the lab's provider: two answers kept, everything else passed on."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from natlab.lab.provider_answers import ProviderAnswers

SCHEMA = "/tfplugin5.Provider/GetSchema"
VALIDATE_PROVIDER = "/tfplugin5.Provider/PrepareProviderConfig"
PLAN = "/tfplugin5.Provider/PlanResourceChange"
REFUSED = "/tfplugin5.Provider/ReadResource"


class FakeProvider(grpc.GenericRpcHandler):
    """Answers every unary call with its method and request; ``REFUSED`` with INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls[method] += 1
            if method == REFUSED:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such resource")
            return f"{method} #{self.calls[method]}: ".encode() + request

        return grpc.unary_unary_rpc_method_handler(answer)


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[fake])
    socket = tmp_path / "provider.sock"
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    reattach = {
        "registry.terraform.io/hashicorp/aws": {"Protocol": "grpc", "Addr": {"Network": "unix", "String": str(socket)}}
    }
    yield fake, json.dumps(reattach)
    server.stop(grace=None).wait()


@pytest.fixture
def relay(provider: tuple[FakeProvider, str]) -> Iterator[tuple[ProviderAnswers, grpc.Channel]]:
    with ProviderAnswers(provider[1]) as answers:
        assert answers.reattach is not None
        (address,) = json.loads(answers.reattach).values()
        with grpc.insecure_channel(f"unix:{address['Addr']['String']}") as channel:
            yield answers, channel


def call(channel: grpc.Channel, method: str, request: bytes) -> bytes:
    return channel.unary_unary(method)(request, timeout=10)


def test_the_schema_and_the_provider_validation_are_asked_once_per_request(
    provider: tuple[FakeProvider, str], relay: tuple[ProviderAnswers, grpc.Channel]
) -> None:
    fake, (answers, channel) = provider[0], relay
    assert [call(channel, SCHEMA, b"") for _ in range(3)] == [f"{SCHEMA} #1: ".encode()] * 3
    assert call(channel, VALIDATE_PROVIDER, b"region=a") == call(channel, VALIDATE_PROVIDER, b"region=a")
    assert call(channel, VALIDATE_PROVIDER, b"region=b").endswith(b"#2: region=b"), "another config: asked again"
    assert (fake.calls[SCHEMA], fake.calls[VALIDATE_PROVIDER], answers.answered) == (1, 2, 3)


def test_every_other_call_reaches_the_provider_with_its_errors(
    provider: tuple[FakeProvider, str], relay: tuple[ProviderAnswers, grpc.Channel]
) -> None:
    fake, (_, channel) = provider[0], relay
    assert call(channel, PLAN, b"x") != call(channel, PLAN, b"x")
    assert fake.calls[PLAN] == 2
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as refused:
            call(channel, REFUSED, b"")
        assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no such resource")
    assert fake.calls[REFUSED] == 2, "an error is not kept"


def test_go_plugins_streams_are_not_relayed(relay: tuple[ProviderAnswers, grpc.Channel]) -> None:
    with pytest.raises(grpc.RpcError) as stdio:
        list(relay[1].unary_stream("/plugin.GRPCStdio/StreamStdio")(b"", timeout=10))
    assert stdio.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_closing_leaves_no_socket_behind(provider: tuple[FakeProvider, str]) -> None:
    answers = ProviderAnswers(provider[1]).open()
    assert answers.reattach is not None
    socket = Path(json.loads(answers.reattach)["registry.terraform.io/hashicorp/aws"]["Addr"]["String"])
    assert socket.exists()
    answers.close()
    assert not socket.parent.exists()
