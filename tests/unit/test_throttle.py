from __future__ import annotations

import heapq

import numpy as np
import pytest

from streams.fanout.throttle import ChannelThrottle
from streams.records import CHANNELS

OA, PUSH, SMS = 0, 1, 2


def _chunk(**counts: int) -> np.ndarray:
    codes = {"oa": OA, "push": PUSH, "sms": SMS}
    return np.concatenate([np.full(n, codes[c], dtype=np.uint8) for c, n in counts.items()])


def test_unlimited_channels_never_wait() -> None:
    throttle = ChannelThrottle()
    throttle.configure({}, share=1.0, now=0.0)
    assert throttle.reserve(_chunk(oa=10_000, sms=10_000), now=0.0) == {}
    assert throttle.chunk_limit(65_536) == 65_536


def test_a_worker_gets_its_share_of_the_cluster_limit() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 1000}, share=0.25, now=0.0)  # owns 2 of 8 partitions
    assert throttle.chunk_limit(65_536) == 25
    assert throttle.reserve(_chunk(sms=25), now=0.0) == {}  # the burst: one chunk
    waits = throttle.reserve(_chunk(sms=500, oa=10), now=0.0)
    assert waits == {"sms": 2.0}


def test_tokens_come_back_with_time_and_rates_change_live() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"push": 100}, share=1.0, now=0.0)
    assert throttle.reserve(_chunk(push=10), now=0.0) == {}
    assert throttle.reserve(_chunk(push=10), now=0.5) == {}  # tokens came back (up to a burst)
    throttle.configure({"push": 10}, share=1.0, now=0.5)
    assert throttle.reserve(_chunk(push=10), now=0.5) == {"push": 1.0}
    throttle.configure({}, share=1.0, now=1.0)
    assert throttle.reserve(_chunk(push=10_000), now=1.0) == {}


def test_emitting_at_the_granted_pace_never_exceeds_the_limit_by_more_than_a_chunk() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 2000}, share=1.0, now=0.0)
    chunk = throttle.chunk_limit(65_536)
    now, sent = 0.0, []
    while now < 10.0:
        wait = throttle.reserve(_chunk(sms=chunk), now=now).get("sms", 0.0)
        now += wait
        sent.append((now, chunk))
    for second in range(1, 10):
        in_window = sum(n for t, n in sent if second - 1 <= t < second)
        assert in_window <= 2000 + chunk
    total = sum(n for t, n in sent if t < 10.0)
    assert total <= 2000 * 10 + chunk


def test_lowering_a_limit_while_its_bucket_is_full_takes_effect_at_once() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 1000}, share=1.0, now=0.0)  # a full bucket: 100 tokens
    throttle.configure({"sms": 100}, share=1.0, now=5.0)  # idle, full, then lowered
    assert throttle.chunk_limit(65_536) == 10
    # what the old limit banked is not spent at the new one: a burst of 10, then 100/s
    assert throttle.reserve(_chunk(sms=10), now=5.0) == {}
    assert throttle.reserve(_chunk(sms=10), now=5.0) == pytest.approx({"sms": 0.1})
    # and idle time banks the new burst only, not the old one
    assert throttle.reserve(_chunk(sms=20), now=60.0) == pytest.approx({"sms": 0.1})


def test_a_rate_change_after_idle_time_pays_the_idle_time_at_the_old_rate() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"push": 100}, share=1.0, now=0.0)
    assert throttle.reserve(_chunk(push=10), now=0.0) == {}  # the burst, spent
    # 50 ms idle at 100/s earned 5 tokens (not 50 at the new 1000/s); the limit then rises
    throttle.configure({"push": 1000}, share=1.0, now=0.05)
    assert throttle.reserve(_chunk(push=10), now=0.05) == pytest.approx({"push": 0.005})


def test_a_blocked_channel_reopened_later_starts_from_what_it_owes() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 0}, share=1.0, now=0.0)
    assert throttle.chunk_limit(65_536) == 1
    assert throttle.reserve(_chunk(sms=1), now=0.0) == {"sms": 3600.0}
    # reopened after 10 s, not after the hour the blocked chunk was told to wait
    throttle.configure({"sms": 100}, share=1.0, now=10.0)
    assert throttle.reserve(_chunk(sms=9), now=10.0) == pytest.approx({"sms": 0.1})


def test_concurrent_chunks_share_the_budget_instead_of_each_spending_it() -> None:
    """LOA_FANOUT_PARALLEL chunks reserve from one throttle, each then sleeping its wait: four
    of them together stay under the limit, as one does."""
    throttle = ChannelThrottle()
    ready = [(0.0, w) for w in range(4)]
    sent: list[tuple[float, int]] = []
    while ready:
        now, worker = heapq.heappop(ready)
        if now >= 10.0:
            continue
        throttle.configure({"sms": 100}, share=1.0, now=now)
        n = throttle.chunk_limit(65_536)
        at = now + max(throttle.reserve(_chunk(sms=n), now=now).values(), default=0.0)
        sent.append((at, n))
        heapq.heappush(ready, (at, worker))
    chunk = 10
    for second in range(1, 10):
        assert sum(n for t, n in sent if second - 1 <= t < second) <= 100 + chunk
    assert sum(n for t, n in sent if t < 10.0) <= 100 * 10 + chunk


def test_a_channel_that_waits_for_another_does_not_bank_the_tokens_of_the_wait() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 100, "push": 1000}, share=1.0, now=0.0)  # bursts of 10
    assert throttle.reserve(_chunk(sms=10, push=10), now=0.0) == {}
    # sms makes the chunk wait 0.1 s; push, owing 5 (5 ms), goes out with it at 0.1 s
    waits = throttle.reserve(_chunk(sms=10, push=5), now=0.0)
    assert waits == pytest.approx({"sms": 0.1, "push": 0.005})
    # push paid at 0.1 s from a full burst: 5 left, not the 100 earned during the wait
    assert throttle.reserve(_chunk(push=10), now=0.1) == pytest.approx({"push": 0.005})


def test_only_a_channel_in_the_chunk_with_limit_zero_is_paused() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 0.0, "push": 1.0}, 1.0, 0.0)
    sms, oa, push = CHANNELS.index("sms"), CHANNELS.index("oa"), CHANNELS.index("push")
    assert throttle.paused(np.array([sms, oa], dtype=np.uint8)) == ["sms"]
    assert throttle.paused(np.array([oa, oa], dtype=np.uint8)) == []  # sms not in the chunk
    assert throttle.paused(np.array([push], dtype=np.uint8)) == []  # 1/s is slow, not paused
