"""Channel throttling: a token bucket per channel, sized to this worker's share (pure).

A channel's limit (tasks/s) is for the whole cluster. Each worker takes the share of the
partitions it owns (``owned / partitions``), so the workers together stay under the limit
without talking to each other; a rebalance changes the shares at the next chunk. A chunk
reserves its tasks per channel before it is emitted and waits out any debt, so a worker runs
at most one chunk ahead of its budget, however many chunks it runs at once
(``LOA_FANOUT_PARALLEL``: a chunk reserved while another waits queues behind it); the
scheduler keeps throttled chunks to a tenth of a second of budget, so the cluster exceeds a
limit by at most one chunk in any second.
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
#: Wait imposed by a limit of 0 (the scheduler tries again after it; configure() sees a new rate).
_BLOCKED_S = 3600.0


@dataclass(slots=True)
class _Bucket:
    rate: float
    tokens: float
    at: float
    #: Most tokens it holds: a tenth of a second of its budget, and never more than a throttled
    #: chunk (sized by the slowest channel), so no channel bursts past its limit by more than one.
    burst: float = 0.0


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
        chunk = float(_chunk(min(wanted.values()))) if wanted else 0.0
        for code, rate in wanted.items():
            # one chunk (a tenth of a second of the slowest budget, at least one task, so a
            # channel slower than 10/s need not pay for each task twice); no budget, no burst
            burst = chunk if rate > 0 else 0.0
            bucket = self._buckets.get(code)
            if bucket is None:
                self._buckets[code] = _Bucket(rate, burst, now, burst)
            else:
                self._refill(bucket, now)
                bucket.rate, bucket.burst = rate, burst
                bucket.tokens = min(bucket.tokens, burst)

    def chunk_limit(self, default: int) -> int:
        """Largest chunk that keeps within a tenth of a second of the slowest budget."""
        if not self._buckets:
            return default
        return min(default, _chunk(min(b.rate for b in self._buckets.values())))

    def paused(self, channels: npt.NDArray[np.uint8]) -> list[str]:
        """Channels of a chunk whose limit is 0: the chunk must not go out until it is raised
        (``loa channels set sms 0`` pauses SMS); :meth:`reserve` is not asked meanwhile."""
        counts = np.bincount(channels, minlength=len(CHANNELS))
        return [CHANNELS[code] for code, b in self._buckets.items() if b.rate <= 0 and counts[code]]

    def reserve(self, channels: npt.NDArray[np.uint8], now: float) -> dict[str, float]:
        """Take tokens for a chunk; returns the wait (seconds) each throttled channel imposes.

        The chunk goes out after the longest wait, so every channel pays for it at that moment:
        a channel that waits for another one's budget does not also bank the tokens of the wait.
        """
        if not self._buckets:
            return {}
        counts = np.bincount(channels, minlength=len(CHANNELS))
        taken = [(code, b, int(counts[code])) for code, b in self._buckets.items() if counts[code]]
        waits: dict[str, float] = {}
        for code, bucket, n in taken:
            self._refill(bucket, now)
            if bucket.tokens < n:
                short = n - bucket.tokens
                waits[CHANNELS[code]] = short / bucket.rate if bucket.rate > 0 else _BLOCKED_S
        sent_at = now + max(waits.values(), default=0.0)
        for _, bucket, n in taken:
            self._refill(bucket, sent_at)
            bucket.tokens -= n
        return waits

    @staticmethod
    def _refill(bucket: _Bucket, now: float) -> None:
        # ``now`` may be before ``bucket.at``: a concurrent chunk (LOA_FANOUT_PARALLEL) is
        # already scheduled then and has spent the tokens earned until then. Going back owes
        # them again (a negative ``elapsed``), so the next chunk queues up behind it instead of
        # being granted the same interval twice.
        elapsed = now - bucket.at
        bucket.tokens = min(bucket.burst, bucket.tokens + elapsed * bucket.rate)
        bucket.at = now


def _chunk(slowest: float) -> int:
    """A throttled chunk: a tenth of a second of the slowest budget, at least one task."""
    return max(1, int(slowest * _BURST_S))
