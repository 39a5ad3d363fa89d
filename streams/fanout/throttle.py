"""Channel throttling: a token bucket per channel, sized to this worker's share (pure).

A channel's limit (tasks/s) is for the whole cluster. Each worker takes the share of the
partitions it owns (``owned / partitions``), so the workers together stay under the limit
without talking to each other; a rebalance changes the shares at the next chunk. A chunk
reserves its tasks per channel before it is emitted and waits out any debt, so a worker runs
at most one chunk ahead of its budget; the scheduler keeps throttled chunks to a tenth of a
second of budget, so the cluster exceeds a limit by at most one chunk in any second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streams.records import CHANNELS

__all__ = ["ChannelThrottle"]

#: Burst allowance: one tenth of a second of budget, the size of a throttled chunk.
_BURST_S = 0.1


@dataclass(slots=True)
class _Bucket:
    rate: float
    tokens: float
    at: float


@dataclass(slots=True)
class ChannelThrottle:
    """Token buckets per channel code; channels without a limit are never throttled."""

    _buckets: dict[int, _Bucket] = field(default_factory=dict)

    def configure(self, limits: Mapping[str, float], share: float, now: float) -> None:
        """Cluster-wide ``limits`` (tasks/s by channel name) times this worker's ``share``."""
        wanted = {CHANNELS.index(c): rate * share for c, rate in limits.items() if c in CHANNELS}
        for code in list(self._buckets):
            if code not in wanted:
                del self._buckets[code]
        for code, rate in wanted.items():
            bucket = self._buckets.get(code)
            if bucket is None:
                self._buckets[code] = _Bucket(rate, rate * _BURST_S, now)
            else:
                self._refill(bucket, now)
                bucket.rate = rate
                bucket.tokens = min(bucket.tokens, rate * _BURST_S)

    def chunk_limit(self, default: int) -> int:
        """Largest chunk that keeps within a tenth of a second of the slowest budget."""
        if not self._buckets:
            return default
        slowest = min(b.rate for b in self._buckets.values())
        return max(1, min(default, int(slowest * 0.1)))

    def reserve(self, channels: npt.NDArray[np.uint8], now: float) -> dict[str, float]:
        """Take tokens for a chunk; returns the wait (seconds) each throttled channel imposes."""
        if not self._buckets:
            return {}
        counts = np.bincount(channels, minlength=len(CHANNELS))
        waits: dict[str, float] = {}
        for code, bucket in self._buckets.items():
            n = int(counts[code])
            if n == 0:
                continue
            self._refill(bucket, now)
            bucket.tokens -= n
            if bucket.tokens < 0:
                waits[CHANNELS[code]] = -bucket.tokens / bucket.rate if bucket.rate > 0 else 3600.0
        return waits

    @staticmethod
    def _refill(bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(bucket.rate * _BURST_S, bucket.tokens + elapsed * bucket.rate)
        bucket.at = now
