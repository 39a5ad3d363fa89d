"""``loa status``: one alert's progress, from targeted recipients to delivery receipts.

Reads two compacted topics, read_committed: ``loa.fanout.progress`` (targeted, emitted and
suppressed per order partition, written by the fan-out) and ``loa.receipts.progress`` (delivered
and failed per receipts partition, written by :mod:`streams.receipts`). :func:`summarize` is
the pure part; :class:`StatusReader` follows the topics incrementally (for ``--watch``).

Suppressions are read from the progress record: an order ``stopped`` by a Cancel or its expiry
suppresses the recipients it did not reach (``targeted - emitted``, under that reason), and an
optional ``suppressed`` object (``{reason: count}``) carries the stages that drop recipients
before emission (dedup, caps, opt-outs); they also count
:meth:`streams.metrics.Metrics.suppressed`.

Fallbacks: a failed task whose recipient moved to their next channel is counted under
``fallbacks`` (by route and reason, e.g. ``oa>sms http_400``), not ``failed``: the fallback
task's own receipt settles that recipient. ``delivered + failed`` counts settled recipients.

"Done" means the fan-out finished on every partition and every emitted task's recipient is
settled (delivered, or failed with no further channel).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import TopicMissing
from streams.kafkaio.clients import make_reader, start_all, topic_specs
from streams.settings import Settings

__all__ = ["AlertStatus", "StatusReader", "as_json", "render", "summarize"]


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
        "pending": max(s.emitted - s.settled, 0),
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
        f"  pending     {max(s.emitted - s.settled, 0):>12,}",
    ]
    return "\n".join(lines)


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
