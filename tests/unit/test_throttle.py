from __future__ import annotations

import numpy as np

from streams.fanout.throttle import ChannelThrottle

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
