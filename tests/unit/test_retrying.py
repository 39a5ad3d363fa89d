"""The one retry policy (streams.retrying): classification by type, back-off with jitter, limits,
and what a failure hook can decide. Pure: the sleep, clock and random source are passed in."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    ProducerFenced,
    TopicAuthorizationFailedError,
)

from streams.delivery.retry import full_jitter_s
from streams.errors import (
    BrokerUnreachable,
    DirectoryNotReady,
    InternalError,
    MalformedInput,
    PartitionNotRestored,
    UnknownRegion,
)
from streams.kafkaio.replica import ReplicaNotReady
from streams.retrying import (
    ABANDONED,
    Failed,
    Failure,
    RetryPolicy,
    Then,
    backoff_s,
    classify,
    transient,
)

log = logging.getLogger("test.retrying")


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (KafkaConnectionError(), Failure.TRANSIENT),
        # aiokafka marks these not retriable; they are still the cluster's state, not the input's
        (KafkaTimeoutError(), Failure.TRANSIENT),
        (TopicAuthorizationFailedError(), Failure.TRANSIENT),
        (ProducerFenced(), Failure.TRANSIENT),
        (OSError("reset"), Failure.TRANSIENT),
        (ConnectionResetError(), Failure.TRANSIENT),
        (TimeoutError(), Failure.TRANSIENT),
        (ReplicaNotReady("accepted"), Failure.TRANSIENT),
        (DirectoryNotReady("replaying"), Failure.TRANSIENT),
        (BrokerUnreachable("down"), Failure.TRANSIENT),
        (PartitionNotRestored("receipts 3"), Failure.TRANSIENT),
        (MalformedInput("bad cell"), Failure.POISON),
        (UnknownRegion("VN-99"), Failure.POISON),
        (InternalError("a bug met this input"), Failure.POISON),
        (ValueError("bad expiry"), Failure.POISON),
        (KeyError("ward"), Failure.POISON),
    ],
)
def test_a_failure_is_transient_or_poison_by_its_type(exc: Exception, failure: Failure) -> None:
    assert classify(exc) is failure
    assert transient(exc) is (failure is Failure.TRANSIENT)


def test_a_class_named_like_a_kafka_error_is_not_taken_for_one() -> None:
    """By type, never by name: a class that only borrows Kafka's name is poison."""
    namesake = type("ProducerFenced", (Exception,), {})
    assert classify(namesake()) is Failure.POISON


def test_backoff_doubles_from_its_base_up_to_its_cap_without_jitter() -> None:
    waits = [backoff_s(n, base_s=0.5, cap_s=5.0, rand=0.3, jitter=0.0) for n in range(1, 7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_s(10_000, base_s=0.5, cap_s=5.0, rand=0.0, jitter=0.0) == 5.0  # no overflow


@pytest.mark.parametrize("attempt", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_full_jitter_is_the_delivery_workers_back_off(attempt: int, rand: float) -> None:
    """``jitter=1`` is exactly streams.delivery.retry's full jitter, so delivery can use it."""
    ours = backoff_s(attempt, base_s=1.0, cap_s=300.0, rand=rand, jitter=1.0)
    assert ours == full_jitter_s(attempt, base_s=1.0, cap_s=300.0, rand=rand)


def test_half_jitter_waits_between_half_and_all_of_the_ceiling() -> None:
    policy = RetryPolicy(base_s=2.0, cap_s=2.0, jitter=0.5)
    assert policy.delay_s(1, 0.0) == 1.0
    assert policy.delay_s(1, 0.999) == pytest.approx(1.999)


class _Sleeps:
    """Records the waits instead of spending them; the clock moves by what was slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class _Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _fixed(sleeps: _Sleeps) -> dict[str, Any]:
    """A logger, a random source of 0 and the recording sleep and clock."""
    return {"log": log, "rand": lambda: 0.0, "sleep": sleeps.sleep, "clock": sleeps.clock}


async def test_transient_failures_are_retried_with_back_off_until_it_succeeds() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy(base_s=0.5, cap_s=5.0, jitter=0.0)
    op = _Flaky(KafkaConnectionError(), OSError("reset"), DirectoryNotReady("slow"))
    assert await policy.run(op, what="op", **_fixed(sleeps)) == "done"
    assert op.calls == 4 and sleeps.slept == [0.5, 1.0, 2.0]


async def test_the_last_error_is_raised_after_the_attempts_allowed() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy(attempts=3, jitter=0.0)
    op = _Flaky(*(KafkaConnectionError() for _ in range(5)))
    with pytest.raises(KafkaConnectionError):
        await policy.run(op, what="op", **_fixed(sleeps))
    assert op.calls == 3 and len(sleeps.slept) == 2


async def test_no_attempt_starts_past_the_deadline() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy(base_s=1.0, cap_s=1.0, jitter=0.0, deadline_s=3.5)
    op = _Flaky(*(OSError("down") for _ in range(10)))
    with pytest.raises(OSError, match="down"):
        await policy.run(op, what="op", **_fixed(sleeps))
    assert op.calls == 4 and sleeps.now - 100.0 <= 3.5  # attempts at 0, 1, 2 and 3 s


async def test_poison_is_raised_at_once_unless_the_policy_retries_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = _Sleeps()
    strict = RetryPolicy(retry_poison=False)
    with pytest.raises(MalformedInput):
        await strict.run(_Flaky(MalformedInput("bad")), what="op", **_fixed(sleeps))
    assert sleeps.slept == []
    patient = RetryPolicy()
    with caplog.at_level(logging.WARNING, logger=log.name):
        got = await patient.run(_Flaky(ValueError("bug")), what="op", **_fixed(sleeps))
    assert got == "done" and len(sleeps.slept) == 1
    # a poison error that is retried is logged with its traceback; a transient one is not
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert caplog.records[0].exc_info is not None


async def test_work_no_longer_wanted_is_abandoned_before_its_next_attempt() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy()
    op = _Flaky(*(OSError("down") for _ in range(10)))
    wanted = iter([True, True, False])
    got = await policy.run_while(
        op,
        lambda: next(wanted),
        what="op",
        **_fixed(sleeps),
    )
    assert got is ABANDONED and op.calls == 2


async def test_a_hook_sees_every_failure_and_decides_what_comes_next() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy(jitter=0.0)
    seen: list[tuple[int, Failure]] = []

    async def hook(failed: Failed) -> Then | None:
        seen.append((failed.attempt, failed.failure))
        if isinstance(failed.error, ValueError):
            return Then.AT_ONCE  # the next attempt does other work: no wait
        if isinstance(failed.error, ProducerFenced):
            return Then.ABANDON
        return None

    op = _Flaky(OSError("down"), ValueError("bad"), ProducerFenced())
    got = await policy.run_while(
        op,
        lambda: True,
        what="op",
        on_failure=hook,
        **_fixed(sleeps),
    )
    assert got is ABANDONED
    assert seen == [(1, Failure.TRANSIENT), (2, Failure.POISON), (3, Failure.TRANSIENT)]
    assert sleeps.slept == [0.5]  # after the first failure only

    async def give_up(failed: Failed) -> Then:
        return Then.RAISE

    with pytest.raises(OSError):
        await policy.run(_Flaky(OSError("x")), what="op", on_failure=give_up, **_fixed(sleeps))


async def test_cancellation_is_never_retried() -> None:
    sleeps, policy = _Sleeps(), RetryPolicy()
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await policy.run(cancelled, what="op", **_fixed(sleeps))
    assert calls == 1 and sleeps.slept == []
