"""``loa status``: one alert's progress, from targeted recipients to delivery receipts.

Reads two compacted topics, read_committed: ``loa.fanout.progress`` (targeted, emitted and
suppressed per order partition, written by the fan-out) and ``loa.receipts.progress`` (delivered
and failed per receipts partition, written by :mod:`streams.receipts.fold`). :func:`summarize` is
the pure part; :class:`StatusReader` follows the topics incrementally (for ``--watch``).

Suppressions are read from the progress record: an order ``stopped`` by a Cancel or its expiry
suppresses the recipients it did not reach (``targeted - emitted``, under that reason), and an
optional ``suppressed`` object (``{reason: count}``) carries the stages that drop recipients
before emission (dedup, caps, opt-outs); they also count
:meth:`streams.metrics.Metrics.suppressed`.

Fallbacks: a failed task whose recipient moved to their next channel is counted under
``fallbacks`` (by route and reason, e.g. ``oa>sms http_400``), not ``failed``: the fallback
task's own receipt settles that recipient. ``delivered + failed`` counts settled recipients.

Per channel (``channels``): delivered, retrying (tasks waiting for another attempt, with the
latest next attempt announced, the highest attempt and the last reason), fell back (moved to
the recipient's next channel) and failed for good, summed from the tallies'
:class:`~streams.receipts.fold.ChannelTally`. A retrying task is not settled: it is still pending.

"Done" means the fan-out finished on every partition and every emitted task's recipient is
settled (delivered, or failed with no further channel).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import TopicMissing
from streams.kafkaio.clients import make_reader, start_all, topic_specs
from streams.settings.model import Settings

__all__ = ["AlertStatus", "ChannelStatus", "StatusReader", "as_json", "render", "summarize"]


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """One channel's tasks of an alert version, summed over partitions."""

    delivered: int = 0
    #: Tasks waiting for another attempt now.
    retrying: int = 0
    #: The latest next attempt a retrying receipt announced (Unix seconds), its attempt and
    #: the last retry reason seen.
    next_attempt_at: float | None = None
    max_attempt: int = 0
    retry_reason: str | None = None
    #: Tasks that moved their recipient to the next channel.
    fell_back: int = 0
    #: Failed tasks whose recipient has no further channel.
    failed_for_good: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "next_attempt_at": self.next_attempt_at,
            "max_attempt": self.max_attempt,
            "retry_reason": self.retry_reason,
            "fell_back": self.fell_back,
            "failed_for_good": self.failed_for_good,
        }


def _sum_channels(docs: Iterable[dict[str, Any]]) -> dict[str, ChannelStatus]:
    """Per channel, the sum of the tallies' channel documents (``next_attempt_at``: the latest,
    with the reason of the partition that announced it)."""
    sums: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for channel, c in (doc.get("channels") or {}).items():
            s = sums.setdefault(str(channel), {"next": None, "reason": None, "attempt": 0})
            for name in ("delivered", "retrying", "fell_back"):
                s[name] = s.get(name, 0) + int(c.get(name, 0))
            fell_back_final = int(c.get("fell_back_final", 0))
            s["for_good"] = s.get("for_good", 0) + max(int(c.get("failed", 0)) - fell_back_final, 0)
            s["attempt"] = max(s["attempt"], int(c.get("max_attempt", 0)))
            next_at = c.get("next_attempt_at")
            if next_at is not None and (s["next"] is None or float(next_at) > s["next"]):
                s["next"], s["reason"] = float(next_at), c.get("last_retry_reason")
    return {
        channel: ChannelStatus(
            delivered=s.get("delivered", 0),
            retrying=s.get("retrying", 0),
            next_attempt_at=s["next"] if s.get("retrying", 0) else None,
            max_attempt=s["attempt"],
            retry_reason=s["reason"] if s.get("retrying", 0) else None,
            fell_back=s.get("fell_back", 0),
            failed_for_good=s.get("for_good", 0),
        )
        for channel, s in sorted(sums.items())
    }


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """Progress of one alert version, summed over partitions."""

    alert_id: str
    version: int
    partitions: int
    partitions_done: int
    targeted: int = 0
    emitted: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    failed: int = 0
    failed_reasons: dict[str, int] = field(default_factory=dict)
    #: Tasks that failed and moved their recipient to the next channel, by ``"<from>><to>
    #: <reason>"``.
    fallbacks: dict[str, int] = field(default_factory=dict)
    #: Per channel: delivered, retrying (with the next attempt), fell back, failed for good.
    channels: dict[str, ChannelStatus] = field(default_factory=dict)

    @property
    def retrying(self) -> int:
        """Tasks waiting for another attempt (not settled: part of ``pending``)."""
        return sum(c.retrying for c in self.channels.values())

    @property
    def fanout_done(self) -> bool:
        return self.partitions_done >= self.partitions

    @property
    def settled(self) -> int:
        """Tasks with a receipt."""
        return self.delivered + self.failed

    @property
    def done(self) -> bool:
        return self.fanout_done and self.settled >= self.emitted

    @property
    def seen(self) -> bool:
        return self.partitions_done > 0 or self.targeted > 0 or self.settled > 0

    @property
    def fell_back(self) -> int:
        """Tasks that moved their recipient to a further channel."""
        return sum(self.fallbacks.values())


def summarize(
    alert_id: str,
    version: int,
    partitions: int,
    progress: Iterable[dict[str, Any]],
    tallies: Iterable[dict[str, Any]],
) -> AlertStatus:
    """Sum the latest progress and tally records of ``alert_id`` version ``version``."""
    targeted = emitted = done = delivered = failed = 0
    suppressed: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    mine: list[dict[str, Any]] = []
    for doc in progress:
        if doc.get("alert_id") != alert_id or doc.get("version") != version:
            continue
        targeted += int(doc.get("targeted", 0))
        emitted += int(doc.get("emitted", 0))
        done += bool(doc.get("done"))
        left_out = 0
        for reason, n in (doc.get("suppressed") or {}).items():
            suppressed[str(reason)] += int(n)
            left_out += int(n)
        stopped = doc.get("stopped")
        if stopped and doc.get("done"):  # a Cancel or expiry ended it: the rest is suppressed
            rest = int(doc.get("targeted", 0)) - int(doc.get("emitted", 0)) - left_out
            if rest > 0:
                suppressed[str(stopped)] += rest
    for doc in tallies:
        if doc.get("alert_id") != alert_id or doc.get("version") != version:
            continue
        mine.append(doc)
        delivered += int(doc.get("delivered", 0))
        failed += int(doc.get("failed", 0))
        for reason, n in (doc.get("failed_reasons") or {}).items():
            reasons[str(reason)] += int(n)
        for route, n in (doc.get("fallbacks") or {}).items():
            fallbacks[str(route)] += int(n)
    return AlertStatus(
        alert_id=alert_id,
        version=version,
        partitions=partitions,
        partitions_done=done,
        targeted=targeted,
        emitted=emitted,
        suppressed=dict(suppressed),
        delivered=delivered,
        failed=failed,
        failed_reasons=dict(reasons),
        fallbacks=dict(fallbacks),
        channels=_sum_channels(mine),
    )


def as_json(status: AlertStatus) -> dict[str, Any]:
    """The document ``loa status --json`` prints."""
    s = status
    return {
        "alert_id": s.alert_id,
        "version": s.version,
        "state": _state(s),
        "partitions": s.partitions,
        "partitions_done": s.partitions_done,
        "targeted": s.targeted,
        "emitted": s.emitted,
        "suppressed": s.suppressed,
        "delivered": s.delivered,
        "failed": s.failed,
        "failed_reasons": s.failed_reasons,
        "fallbacks": s.fell_back,
        "fallback_routes": s.fallbacks,
        "retrying": s.retrying,
        "pending": max(s.emitted - s.settled, 0),
        "channels": {ch: c.as_json() for ch, c in s.channels.items()},
        "done": s.done,
    }


def _state(s: AlertStatus) -> str:
    if not s.seen:
        return "no progress yet"
    return "done" if s.done else ("fan-out done" if s.fanout_done else "fanning out")


def render(status: AlertStatus) -> str:
    """The text ``loa status`` prints."""
    s = status
    lines = [
        f"{s.alert_id} v{s.version}: {_state(s)}",
        f"  partitions  {s.partitions_done}/{s.partitions} done",
        f"  targeted    {s.targeted:>12,}",
        f"  emitted     {s.emitted:>12,}",
        f"  suppressed  {sum(s.suppressed.values()):>12,}" + _breakdown(s.suppressed),
        f"  delivered   {s.delivered:>12,}",
        f"  failed      {s.failed:>12,}" + _breakdown(s.failed_reasons),
        f"  fell back   {s.fell_back:>12,}" + _breakdown(s.fallbacks),
        f"  retrying    {s.retrying:>12,}",
        f"  pending     {max(s.emitted - s.settled, 0):>12,}",
    ]
    if s.channels:
        lines.append(
            f"  {'channel':<9} {'delivered':>12} {'retrying':>10} {'fell back':>10} "
            f"{'failed for good':>16}"
        )
        for name, c in s.channels.items():
            lines.append(
                f"  {name:<9} {c.delivered:>12,} {c.retrying:>10,} {c.fell_back:>10,} "
                f"{c.failed_for_good:>16,}" + _next_attempt(c)
            )
    return "\n".join(lines)


def _next_attempt(c: ChannelStatus) -> str:
    if not c.retrying or c.next_attempt_at is None:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(c.next_attempt_at))
    return f"  (next attempt by {when}, attempt {c.max_attempt + 1}, last {c.retry_reason})"


def _breakdown(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return "  (" + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) + ")"


class StatusReader:
    """Follows the progress and tallies topics, keeping the latest record of one alert's keys."""

    def __init__(self, settings: Settings, alert_id: str) -> None:
        self.settings = settings
        self.alert_id = alert_id
        self._prefix = f"{alert_id}:".encode()
        self._progress: dict[bytes, dict[str, Any]] = {}
        self._tallies: dict[bytes, dict[str, Any]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> StatusReader:
        self._consumer = make_reader(self.settings)
        await start_all(self._consumer)
        topics = (self.settings.progress_topic, self.settings.delivery_topic)
        missing = sorted(set(topics) - await self._consumer.topics())
        if missing:
            await self._consumer.stop()
            raise TopicMissing(f"topic {', '.join(missing)} does not exist")
        counts = {spec.name: spec.num_partitions for spec in topic_specs(self.settings)}
        topics = (self.settings.progress_topic, self.settings.delivery_topic)
        self._tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def catch_up(self, *, timeout_s: float = 30.0) -> None:
        """Read both topics up to their current (committed) ends."""
        consumer = self._consumer
        assert consumer is not None
        end = await consumer.end_offsets(self._tps)
        async with asyncio.timeout(timeout_s):
            while True:
                await self._poll(0)
                if all([await consumer.position(tp) >= end[tp] for tp in self._tps]):
                    return
                await self._poll(200)

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        data = await self._consumer.getmany(timeout_ms=timeout_ms)
        for tp, records in data.items():
            target = self._progress if tp.topic == self.settings.progress_topic else self._tallies
            for record in records:
                # keys are "<alert_id>:<version>:<partition>"; alert ids may contain ":"
                key = record.key or b""
                if not key.startswith(self._prefix) or key[len(self._prefix) :].count(b":") != 1:
                    continue
                if record.value is None:
                    target.pop(key, None)
                else:
                    target[key] = orjson.loads(record.value)

    def versions(self) -> list[int]:
        return sorted(
            {int(d["version"]) for d in [*self._progress.values(), *self._tallies.values()]}
        )

    def status(self, version: int | None = None) -> AlertStatus:
        """The status of ``version`` (default: the latest version seen, else 1)."""
        if version is None:
            seen = self.versions()
            version = seen[-1] if seen else 1
        return summarize(
            self.alert_id,
            version,
            self.settings.partitions,
            self._progress.values(),
            self._tallies.values(),
        )
