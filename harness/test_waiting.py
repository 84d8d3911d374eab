"""natlab.waiting.wait_until: the one way the harness waits for something."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace

import pytest

from natlab import waiting
from natlab.waiting import wait_until


class Answers:
    """A probe that gives ``values`` in turn, raising those that are exceptions."""

    def __init__(self, values: Iterable[object]) -> None:
        self.left = list(values)

    def __call__(self) -> object:
        value = self.left.pop(0)
        if isinstance(value, BaseException):
            raise value
        return value


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake clock: sleeping advances it at once and records how long each sleep was."""
    fake = SimpleNamespace(now=0.0, sleeps=[])

    def sleep(seconds: float) -> None:
        fake.sleeps.append(seconds)
        fake.now += seconds

    monkeypatch.setattr(waiting, "time", SimpleNamespace(monotonic=lambda: fake.now, sleep=sleep))
    return fake


def test_returns_the_first_answer_at_once(clock: SimpleNamespace) -> None:
    assert wait_until(lambda: 42, what="answer", timeout=1) == 42
    assert clock.sleeps == []


def test_none_and_false_mean_not_yet(clock: SimpleNamespace) -> None:
    probe = Answers([None, False, 0, "ok"])
    assert wait_until(probe, what="answer", timeout=1) == 0  # 0 is an answer, unlike False
    assert len(clock.sleeps) == 2


def test_assertion_and_lookup_errors_mean_not_yet(clock: SimpleNamespace) -> None:
    probe = Answers([AssertionError("a"), LookupError("b"), KeyError("c"), "ok"])
    assert wait_until(probe, what="answer", timeout=1) == "ok"
    assert len(clock.sleeps) == 3


def test_retry_on_names_the_errors_that_mean_not_yet(clock: SimpleNamespace) -> None:
    probe = Answers([ConnectionRefusedError(), "up"])
    assert wait_until(probe, what="server", timeout=1, retry_on=(OSError,)) == "up"
    with pytest.raises(AssertionError):  # no longer "not yet" once retry_on is given
        wait_until(Answers([AssertionError("x"), "ok"]), what="answer", timeout=1, retry_on=(OSError,))


def test_any_other_error_propagates_at_once(clock: SimpleNamespace) -> None:
    probe = Answers([ValueError("broken"), "never"])
    with pytest.raises(ValueError, match="broken"):
        wait_until(probe, what="answer", timeout=1)
    assert probe.left == ["never"]
    assert clock.sleeps == []


def test_timeout_names_what_and_is_chained_from_the_last_error(clock: SimpleNamespace) -> None:
    errors = [LookupError(f"attempt {n}") for n in range(1000)]
    with pytest.raises(TimeoutError) as timed_out:
        wait_until(Answers(errors), what="widget", timeout=0.5, interval=0.1)
    message = str(timed_out.value)
    assert message.startswith("no widget after 0.5 s: attempt ")
    last = timed_out.value.__cause__
    assert isinstance(last, LookupError) and str(last) in message
    assert last is errors[len(clock.sleeps)], "the cause is the last error, not the first"


def test_timeout_without_errors_has_no_cause(clock: SimpleNamespace) -> None:
    with pytest.raises(TimeoutError, match=r"^no answer after 1\.0 s$") as timed_out:
        wait_until(lambda: None, what="answer", timeout=1)
    assert timed_out.value.__cause__ is None


def test_never_sleeps_past_the_deadline(clock: SimpleNamespace) -> None:
    with pytest.raises(TimeoutError):
        wait_until(lambda: None, what="answer", timeout=1, interval=0.3)
    assert clock.sleeps == [0.3, 0.3, 0.3]
    assert clock.now <= 1


def test_backoff_doubles_up_to_max_interval(clock: SimpleNamespace) -> None:
    with pytest.raises(TimeoutError):
        wait_until(lambda: None, what="answer", timeout=10, interval=0.1, max_interval=1.0)
    assert clock.sleeps[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert max(clock.sleeps) == 1.0
    assert len(clock.sleeps) > 6


def test_really_waits_on_the_real_clock() -> None:
    ticks = iter(range(3))
    assert wait_until(lambda: next(ticks) == 2 or None, what="third tick", timeout=1, interval=0.001) is True
