"""natlab.resource.Resource: start, and always close, even when the start fails half-way."""

from __future__ import annotations

from typing import Self

import pytest

from natlab.resource import Resource


class Recorder(Resource):
    """Records its calls; ``fail`` makes ``start()`` raise after taking half of what it takes."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def start(self) -> Self:
        self.calls.append("start: first half")
        if self.fail is not None:
            raise self.fail
        self.calls.append("start: second half")
        return self

    def close(self) -> None:
        self.calls.append("close")


def test_with_returns_the_started_resource_and_closes_it_on_exit() -> None:
    resource = Recorder()
    with resource as entered:
        assert entered is resource
        assert resource.calls == ["start: first half", "start: second half"]
    assert resource.calls[-1] == "close"


def test_with_closes_when_the_body_raises_and_lets_the_error_through() -> None:
    resource = Recorder()
    with pytest.raises(RuntimeError, match="body"), resource:
        raise RuntimeError("body")
    assert resource.calls[-1] == "close"


@pytest.mark.parametrize("error", [RuntimeError("start failed"), KeyboardInterrupt()])
def test_with_closes_what_a_failed_start_took_before_the_error_propagates(error: BaseException) -> None:
    resource = Recorder(fail=error)
    body_ran = False
    with pytest.raises(type(error)), resource:
        body_ran = True
    assert not body_ran
    assert resource.calls == ["start: first half", "close"]


def test_open_starts_outside_with_and_closes_a_failed_start() -> None:
    started = Recorder()
    assert started.open() is started
    assert started.calls == ["start: first half", "start: second half"]
    failed = Recorder(fail=RuntimeError("start failed"))
    with pytest.raises(RuntimeError, match="start failed"):
        failed.open()
    assert failed.calls == ["start: first half", "close"]


def test_the_base_starts_and_closes_doing_nothing() -> None:
    with Resource() as resource:
        assert isinstance(resource, Resource)
