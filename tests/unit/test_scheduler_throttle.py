"""The scheduler honours the throttle: its share of the cluster limit, and the wait it sleeps
(``FanoutScheduler._throttle_limit`` / ``_wait_throttle``) under a fake clock, no broker.

The scheduler is built for real (its Kafka clients start only in ``start()``); the clock and
``asyncio.sleep`` of its module are replaced, so a wait is observed, not spent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from aiokafka.errors import KafkaConnectionError

import streams.fanout.scheduler as scheduler
from streams.errors import DirectoryNotReady, MalformedInput
from streams.fanout.scheduler import FanoutScheduler, _transient
from streams.metrics import Metrics
from streams.regions import registry
from streams.settings import Settings

OA, PUSH, SMS = 0, 1, 2


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _Asyncio:
    """The scheduler module's ``asyncio`` with the fake clock's ``sleep``."""

    def __init__(self, clock: _Clock) -> None:
        self.sleep = clock.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(scheduler, "time", c)
    monkeypatch.setattr(scheduler, "asyncio", _Asyncio(c))
    return c


def _scheduler(limits: dict[str, float], owned: int, partitions: int = 8) -> FanoutScheduler:
    s = FanoutScheduler(
        Settings(partitions=partitions),
        registry(),
        directory=None,  # type: ignore[arg-type]  # the throttle never reads it
        metrics=Metrics(),
        stop_reason=lambda order: None,
        limits=lambda: limits,
    )
    part: Any = object()
    s._partitions = dict.fromkeys(range(owned), part)
    return s


def _chunk(**counts: int) -> np.ndarray:
    codes = {"oa": OA, "push": PUSH, "sms": SMS}
    return np.concatenate([np.full(n, codes[c], dtype=np.uint8) for c, n in counts.items()])


def _waited(s: FanoutScheduler, channel: str) -> float:
    return s._metrics.throttle_wait.labels(channel)._value.get()  # type: ignore[no-any-return]


async def test_a_worker_paces_at_its_share_and_sleeps_each_wait(clock: _Clock) -> None:
    s = _scheduler({"sms": 400}, owned=2)  # 2 of 8 partitions: 100/s, chunks of 10
    assert s._throttle_limit() == 10
    await s._wait_throttle(_chunk(sms=10))
    assert clock.slept == []  # the burst
    for _ in range(5):
        assert s._throttle_limit() == 10
        await s._wait_throttle(_chunk(sms=10))
    assert clock.slept == pytest.approx([0.1] * 5)
    assert clock.now == pytest.approx(1000.5)
    assert _waited(s, "sms") == pytest.approx(0.5)


async def test_the_chunk_waits_for_its_slowest_channel_only(clock: _Clock) -> None:
    s = _scheduler({"sms": 800, "push": 1600}, owned=1)  # 100/s and 200/s
    assert s._throttle_limit() == 10  # a tenth of a second of the slowest
    await s._wait_throttle(_chunk(sms=5, push=5))
    await s._wait_throttle(_chunk(sms=10, push=10, oa=1000))  # oa has no limit
    # sms owes 5 (50 ms at 100/s), push 5 (25 ms at 200/s): the chunk waits the longer
    assert clock.slept == pytest.approx([0.05])
    assert _waited(s, "sms") == pytest.approx(0.05)
    assert _waited(s, "push") == pytest.approx(0.025)
    assert _waited(s, "oa") == 0.0


async def test_a_worker_that_owns_no_partition_has_no_budget(clock: _Clock) -> None:
    s = _scheduler({"sms": 400}, owned=0)
    assert s._throttle_limit() == 1
    await s._wait_throttle(_chunk(sms=1))
    assert clock.slept == [3600.0]


async def test_the_shares_follow_a_rebalance_at_the_next_chunk(clock: _Clock) -> None:
    s = _scheduler({"sms": 800}, owned=8)  # the whole limit: chunks of 80
    assert s._throttle_limit() == 80
    s._partitions = dict.fromkeys(range(2), object())  # type: ignore[arg-type]
    assert s._throttle_limit() == 20


async def test_unlimited_channels_never_sleep(clock: _Clock) -> None:
    s = _scheduler({}, owned=1)
    assert s._throttle_limit() == s._settings.fanout_chunk
    await s._wait_throttle(_chunk(sms=100_000, push=100_000))
    assert clock.slept == []


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (KafkaConnectionError(), True),
        (OSError("reset"), True),
        (TimeoutError(), True),
        (DirectoryNotReady("replaying"), True),
        (MalformedInput("bad cell"), False),
        (ValueError("bad expiry"), False),
    ],
)
def test_only_kafka_network_and_retriable_errors_are_transient(
    exc: Exception, transient: bool
) -> None:
    assert _transient(exc) is transient
