"""The scheduler's throttle arithmetic: its share of the cluster limit, and the wait it sleeps
(``FanoutScheduler._throttle_limit`` / ``_wait_throttle``), pure logic on a manual clock.

These two methods touch no Kafka client (the scheduler's clients exist only after
``start()``, which these tests never call), so nothing of Kafka is replaced here: only the
module's clock and ``asyncio.sleep``, so a wait is observed, not spent. The same behaviour on
the real broker: ``tests/integration/test_fanout_rules.py`` (limits) and
``tests/integration/test_cli.py`` (channel limits set and lifted). Last: ``submit`` never
claims a partition (nothing of Kafka either).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import streams.fanout.scheduler as scheduler
from streams.fanout.scheduler import FanoutScheduler
from streams.metrics import Metrics
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.settings.model import Settings

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
        await asyncio.sleep(0)  # the real one: other tasks run while this one "waits"


class _Asyncio:
    """The scheduler module's ``asyncio`` with the manual clock's ``sleep``."""

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


def _never() -> str | None:
    return None


def _after(checks: int, why: str = "cancelled") -> Any:
    """A stop check that finds ``why`` from its ``checks``-th call on."""
    calls = [0]

    def check() -> str | None:
        calls[0] += 1
        return why if calls[0] >= checks else None

    return check


def _waited(s: FanoutScheduler, channel: str) -> float:
    return s._metrics.throttle_wait.labels(channel)._value.get()  # type: ignore[no-any-return]


async def test_a_worker_paces_at_its_share_and_sleeps_each_wait(clock: _Clock) -> None:
    s = _scheduler({"sms": 400}, owned=2)  # 2 of 8 partitions: 100/s, chunks of 10
    assert s._throttle_limit() == 10
    await s._wait_throttle(_chunk(sms=10), _never)
    assert clock.slept == []  # the burst
    for _ in range(5):
        assert s._throttle_limit() == 10
        await s._wait_throttle(_chunk(sms=10), _never)
    assert clock.slept == pytest.approx([0.1] * 5)
    assert clock.now == pytest.approx(1000.5)
    assert _waited(s, "sms") == pytest.approx(0.5)


async def test_the_chunk_waits_for_its_slowest_channel_only(clock: _Clock) -> None:
    s = _scheduler({"sms": 800, "push": 1600}, owned=1)  # 100/s and 200/s
    assert s._throttle_limit() == 10  # a tenth of a second of the slowest
    await s._wait_throttle(_chunk(sms=5, push=5), _never)
    await s._wait_throttle(_chunk(sms=10, push=10, oa=1000), _never)  # oa: no limit
    # sms owes 5 (50 ms at 100/s), push 5 (25 ms at 200/s): the chunk waits the longer
    assert clock.slept == pytest.approx([0.05])
    assert _waited(s, "sms") == pytest.approx(0.05)
    assert _waited(s, "push") == pytest.approx(0.025)
    assert _waited(s, "oa") == 0.0


async def test_a_worker_that_owns_no_partition_has_no_budget(clock: _Clock) -> None:
    s = _scheduler({"sms": 400}, owned=0)
    assert s._throttle_limit() == 1
    # held, not sent after a while: only a reason to stop ends the wait
    assert await s._wait_throttle(_chunk(sms=1), _after(3)) == "cancelled"
    assert clock.slept == [scheduler.THROTTLE_RECHECK_S] * 3


async def test_a_paused_channel_holds_the_chunk_until_its_limit_is_raised(clock: _Clock) -> None:
    limits = {"sms": 0.0}
    s = _scheduler(limits, owned=8)
    s._throttle_limit()
    waiting = asyncio.ensure_future(s._wait_throttle(_chunk(sms=5, oa=5), _never))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done() and len(clock.slept) >= 3  # still paused
    limits["sms"] = 1000.0
    assert await waiting is None
    assert _waited(s, "sms") >= 3 * scheduler.THROTTLE_RECHECK_S


async def test_a_cancel_during_a_throttle_wait_stops_the_chunk(clock: _Clock) -> None:
    s = _scheduler({"sms": 10}, owned=8)  # 10/s: a burst of 1, chunks of 1
    s._throttle_limit()
    await s._wait_throttle(_chunk(sms=1), _never)
    # 30 tasks owe 3 s; the Cancel comes at the second look
    assert await s._wait_throttle(_chunk(sms=30), _after(2)) == "cancelled"
    assert clock.now - 1000.0 == pytest.approx(2 * scheduler.THROTTLE_RECHECK_S)


async def test_the_shares_follow_a_rebalance_at_the_next_chunk(clock: _Clock) -> None:
    s = _scheduler({"sms": 800}, owned=8)  # the whole limit: chunks of 80
    assert s._throttle_limit() == 80
    s._partitions = dict.fromkeys(range(2), object())  # type: ignore[arg-type]
    assert s._throttle_limit() == 20


async def test_unlimited_channels_never_sleep(clock: _Clock) -> None:
    s = _scheduler({}, owned=1)
    assert s._throttle_limit() == s._settings.fanout_chunk
    await s._wait_throttle(_chunk(sms=100_000, push=100_000), _never)
    assert clock.slept == []


def test_an_order_of_a_partition_not_restored_here_is_left_to_its_owner() -> None:
    """``submit`` never claims: the agent waits for ownership first, so a partition that is not
    restored here was revoked meanwhile, and its owner's restore reads the order."""
    s = _scheduler({}, owned=0)
    order = FanoutOrder("a.vn/T-1", 1, TaskKind.ALERT, Priority.EXTREME, 3, ("VN-22",), False)
    assert s.submit(order) is False
    assert s.partitions.owned == {}
