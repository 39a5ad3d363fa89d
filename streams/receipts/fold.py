"""The receipts stage: folds ``loa.sends.receipts`` into per-alert delivery tallies.

Data flow: delivery workers -> ``loa.sends.receipts`` (key recipient id, partition = the send
task's partition) -> [receipts agent] -> ``loa.receipts.progress`` (compacted, key
``<alert_id>:<version>:<partition>``, ``schemas/delivery.schema.json``) -> ``loa status`` and the
``loa_receipts_total`` metric.

The first half of this module is the pure fold (no Kafka): :func:`parse_receipt` and
:class:`PartitionTallies`. The second half, :class:`ReceiptsAgent`, is its Kafka side.

Retries: a ``retrying`` receipt (one per failed attempt) does not settle its task; the task's
``delivered`` or ``failed`` receipt does, later. Per channel the fold counts *tasks* waiting for a
retry, not retrying receipts: a task enters ``retrying`` with the retrying receipt of its first
attempt (a task fetched from a send topic) and leaves it with the final receipt of an attempt
read from a retry tier; the delivery worker marks the receipts of those attempts ``from_retry``
(:mod:`streams.delivery.worker`). Receipts written before that mark existed are taken as
``from_retry`` when their ``attempt`` is above 1. It also keeps, per channel, the latest
``next_attempt_at`` announced, the highest attempt and the last retry reason.

Durable state (the choice): the compacted tallies topic *is* the state. Tallies of receipts
partition ``p`` are written to partition ``p`` of the tallies topic, in one Kafka transaction
with the consumer group's offsets of the receipts consumed. On assignment a worker rebuilds the
tallies of ``p`` by reading that partition (read_committed) to its end, and resumes from the
group's committed offset of ``p``: both were committed together, so they agree. The tallies
are rebuilt only through :mod:`streams.kafkaio.ownership` (an assignment, or :meth:`Ownership.reset`
after a failed batch); a batch never restores a partition by itself.

Guarantee: every committed receipt is counted exactly once in the tallies (read_committed), as
long as a receipts partition has one live owner; a fenced-out zombie worker (paused longer
than the session timeout) may still commit one batch twice, because aiokafka's transactional
offset commit does not carry the group generation. Receipts themselves are as exact as the
delivery workers make them (``loa deliver`` writes them transactionally).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.errors import MalformedInput, PartitionNotRestored, quote
from streams.health import Readiness
from streams.kafkaio.clients import latest_values, make_producer, make_reader
from streams.kafkaio.ownership import Ownership, OwnershipListener
from streams.metrics import RECEIPT_OUTCOMES, Metrics
from streams.records import CHANNELS
from streams.retrying import Failed, RetryPolicy, Then
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = [
    "ChannelTally",
    "PartitionTallies",
    "Receipt",
    "ReceiptsAgent",
    "Tally",
    "parse_receipt",
    "tally_key",
]

log = logging.getLogger(__name__)

AlertVersion = tuple[str, int]

#: Reason codes longer than this are cut: they become part of a bounded set in reports.
_MAX_REASON = 64
#: A failed batch: its tallies rebuilt and tried again after 1 s doubling to 5 s, forever.
BATCH_RETRY = RetryPolicy(base_s=1.0)


# -- pure fold ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """The fields of a receipt that the tallies need (``schemas/receipt.schema.json``)."""

    alert_id: str
    version: int
    channel: str
    outcome: str
    reason: str | None
    #: On a failed or retrying receipt: the channel the recipient moved to (a fallback task
    #: was written).
    fallback: str | None = None
    #: The attempt this receipt ends (retrying receipts; final ones of retried tasks may too).
    attempt: int = 0
    #: On a retrying receipt: Unix seconds when the next attempt is due.
    next_attempt_at: float | None = None
    #: The attempt was read from a retry tier: the task had a retrying receipt before.
    from_retry: bool = False


def parse_receipt(raw: bytes | None) -> Receipt:
    """Read one receipt record; :class:`MalformedInput` when it cannot be tallied."""
    if not raw:
        raise MalformedInput("empty receipt")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(f"receipt is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedInput("receipt is not a JSON object")
    try:
        alert_id, version = doc["alert_id"], doc["version"]
        channel, outcome = doc["channel"], doc["outcome"]
    except KeyError as exc:
        raise MalformedInput(f"receipt lacks {exc.args[0]}", pointer=f"/{exc.args[0]}") from None
    # bool is an int to Python, not to the schema: `"version": true` would be tallied as 1
    if not isinstance(alert_id, str) or type(version) is not int or version < 1:
        raise MalformedInput("receipt alert_id/version invalid", pointer="/version")
    if outcome not in (*RECEIPT_OUTCOMES, "retrying"):
        raise MalformedInput(f"receipt outcome {quote(outcome)} unknown", pointer="/outcome")
    if channel not in CHANNELS:  # a free-form channel would be an unbounded metric label
        raise MalformedInput(f"receipt channel {quote(channel)} unknown", pointer="/channel")
    reason = doc.get("reason")
    reason = str(reason or "unspecified")[:_MAX_REASON] if outcome != "delivered" else None
    fallback = doc.get("fallback") if outcome != "delivered" else None
    if fallback is not None and fallback not in CHANNELS:
        raise MalformedInput(f"receipt fallback {quote(fallback)} unknown", pointer="/fallback")
    attempt = doc.get("attempt") or 0
    next_at = doc.get("next_attempt_at")
    if type(attempt) is not int or attempt < 0:
        raise MalformedInput("receipt attempt invalid", pointer="/attempt")
    if next_at is not None and (isinstance(next_at, bool) or not isinstance(next_at, int | float)):
        raise MalformedInput("receipt next_attempt_at invalid", pointer="/next_attempt_at")
    # receipts written before the worker marked them: an attempt above 1 was a retry's
    from_retry = bool(doc["from_retry"]) if "from_retry" in doc else attempt > 1
    return Receipt(
        alert_id,
        version,
        channel,
        outcome,
        reason,
        fallback,
        attempt=attempt,
        next_attempt_at=None if next_at is None else float(next_at),
        from_retry=from_retry,
    )


@dataclass(slots=True)
class ChannelTally:
    """One channel's tasks in one alert version and partition, by where they stand."""

    #: Final receipts: delivered; failed (with or without a fallback).
    delivered: int = 0
    failed: int = 0
    #: Tasks that moved their recipient to a further channel (on a failed or, when the first
    #: channel keeps trying, a retrying receipt).
    fell_back: int = 0
    #: Tasks waiting for another attempt now (distinct tasks, not receipts).
    retrying: int = 0
    #: Retrying receipts folded (failed attempts that were retried).
    retry_receipts: int = 0
    max_attempt: int = 0
    #: The latest ``next_attempt_at`` announced by a retrying receipt (Unix seconds).
    next_attempt_at: float | None = None
    last_retry_reason: str | None = None

    #: Of ``fell_back``, those counted on a failed receipt (the rest kept trying first).
    fell_back_final: int = 0

    @property
    def failed_for_good(self) -> int:
        """Failed tasks whose recipient has no further channel."""
        return max(self.failed - self.fell_back_final, 0)

    def to_doc(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "fell_back": self.fell_back,
            "fell_back_final": self.fell_back_final,
            "retrying": self.retrying,
            "retry_receipts": self.retry_receipts,
            "max_attempt": self.max_attempt,
            "next_attempt_at": self.next_attempt_at,
            "last_retry_reason": self.last_retry_reason,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ChannelTally:
        # tallies written before retries were folded carry delivered and failed only
        next_at = doc.get("next_attempt_at")
        reason = doc.get("last_retry_reason")
        return cls(
            delivered=int(doc.get("delivered", 0)),
            failed=int(doc.get("failed", 0)),
            fell_back=int(doc.get("fell_back", 0)),
            retrying=int(doc.get("retrying", 0)),
            retry_receipts=int(doc.get("retry_receipts", 0)),
            max_attempt=int(doc.get("max_attempt", 0)),
            next_attempt_at=None if next_at is None else float(next_at),
            last_retry_reason=None if reason is None else str(reason),
            fell_back_final=int(doc.get("fell_back_final", 0)),
        )


@dataclass(slots=True)
class Tally:
    """Cumulative receipts of one alert version in one partition.

    ``failed`` counts tasks that failed with nowhere left to go; a failed task that moved the
    recipient to a further channel counts under ``fallbacks`` instead (by ``"<from>><to>
    <reason>"``), since its recipient's story continues in the fallback task's receipt. So
    ``delivered + failed`` is the number of recipients whose delivery is settled. Per channel,
    :class:`ChannelTally` also counts the tasks waiting for a retry.
    """

    delivered: int = 0
    failed: int = 0
    failed_reasons: Counter[str] = field(default_factory=Counter)
    channels: dict[str, ChannelTally] = field(default_factory=dict)
    fallbacks: Counter[str] = field(default_factory=Counter)

    def add(self, receipt: Receipt) -> None:
        channel = self.channels.get(receipt.channel)
        if channel is None:
            channel = self.channels[receipt.channel] = ChannelTally()
        if receipt.fallback is not None:
            route = f"{receipt.channel}>{receipt.fallback} {receipt.reason or 'unspecified'}"
            self.fallbacks[route] += 1
            channel.fell_back += 1
        if receipt.outcome == "retrying":
            channel.retry_receipts += 1
            if not receipt.from_retry:  # the task's first failed attempt: it starts waiting
                channel.retrying += 1
            channel.max_attempt = max(channel.max_attempt, receipt.attempt)
            next_at = receipt.next_attempt_at
            if next_at is not None:
                channel.next_attempt_at = max(channel.next_attempt_at or 0.0, next_at)
            channel.last_retry_reason = receipt.reason
            return
        if receipt.from_retry:  # a retried task settles: it waits no more
            channel.retrying = max(channel.retrying - 1, 0)
        if receipt.outcome == "delivered":
            self.delivered += 1
            channel.delivered += 1
            return
        channel.failed += 1
        if receipt.fallback is not None:
            channel.fell_back_final += 1
        else:
            self.failed += 1
            self.failed_reasons[receipt.reason or "unspecified"] += 1

    @property
    def retrying(self) -> int:
        return sum(c.retrying for c in self.channels.values())

    def to_doc(self, key: AlertVersion, partition: int, updated_at: float) -> dict[str, Any]:
        return {
            "alert_id": key[0],
            "version": key[1],
            "partition": partition,
            "delivered": self.delivered,
            "failed": self.failed,
            "retrying": self.retrying,
            "failed_reasons": dict(self.failed_reasons),
            "fallbacks": dict(self.fallbacks),
            "channels": {ch: c.to_doc() for ch, c in self.channels.items()},
            "updated_at": updated_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Tally:
        return cls(
            delivered=int(doc["delivered"]),
            failed=int(doc["failed"]),
            failed_reasons=Counter({str(k): int(v) for k, v in doc["failed_reasons"].items()}),
            # tallies written before fallbacks were counted have none
            fallbacks=Counter({str(k): int(v) for k, v in (doc.get("fallbacks") or {}).items()}),
            channels={str(ch): ChannelTally.from_doc(c) for ch, c in doc["channels"].items()},
        )


def tally_key(alert_id: str, version: int, partition: int) -> bytes:
    """Key of a tally on the compacted tallies topic."""
    return f"{alert_id}:{version}:{partition}".encode()


@dataclass(slots=True)
class PartitionTallies:
    """The tallies of one receipts partition: the fold's state."""

    partition: int
    tallies: dict[AlertVersion, Tally] = field(default_factory=dict)

    def fold(
        self, receipts: Iterable[Receipt]
    ) -> tuple[set[AlertVersion], Counter[tuple[str, str]]]:
        """Add ``receipts``; returns the alert versions changed and ``{(channel, outcome): n}``
        of the final receipts."""
        changed: set[AlertVersion] = set()
        counts: Counter[tuple[str, str]] = Counter()
        for receipt in receipts:
            key = (receipt.alert_id, receipt.version)
            tally = self.tallies.get(key)
            if tally is None:
                tally = self.tallies[key] = Tally()
            tally.add(receipt)
            changed.add(key)
            if receipt.outcome != "retrying":  # the metric counts final receipts
                counts[receipt.channel, receipt.outcome] += 1
        return changed, counts

    def load(self, docs: Iterable[dict[str, Any]]) -> None:
        """Load tallies read back from the tallies topic (the latest record per key wins)."""
        for doc in docs:
            self.tallies[(str(doc["alert_id"]), int(doc["version"]))] = Tally.from_doc(doc)


# -- Kafka side ---------------------------------------------------------------------------------


class ReceiptsAgent:
    """Consumes receipts in group ``<app_id>-receipts``; writes tallies and offsets atomically."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        flush_every_s: float = 0.5,
        readiness: Readiness | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.group_id = f"{settings.app_id}-receipts"
        self._flush_every_s = flush_every_s
        self._state: dict[int, PartitionTallies] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ownership = Ownership([self], readiness or Readiness(), metrics, name="receipts")
        #: a batch failed: rebuild the tallies from committed state before the next one
        self._rewind_first = False

    async def start(self) -> None:
        s = self.settings
        self._producer = make_producer(
            s,
            transactional_id=f"{s.app_id}-receipts-{uuid.uuid4().hex[:12]}",
            client_id=f"{s.app_id}-receipts",
        )
        await self._producer.start()
        self._consumer = make_reader(s, group_id=self.group_id, client_id=f"{s.app_id}-receipts")
        await self._consumer.start()
        self._ownership.start()
        listener = OwnershipListener(self._ownership, s.receipts_topic)
        self._consumer.subscribe([s.receipts_topic], listener=listener)
        self._task = asyncio.create_task(self._run(), name="loa-receipts")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
        await self._ownership.stop()
        if self._producer is not None:
            await self._producer.stop()

    # -- partition ownership (streams.kafkaio.ownership): restore = read the tallies back

    component = "receipts"

    async def restore(self, partition: int) -> None:
        """Rebuild the tallies of a newly owned ``partition`` from the tallies topic."""
        if partition in self._state:
            return
        docs = await latest_values(self.settings, self.settings.delivery_topic, [partition])
        state = PartitionTallies(partition)
        state.load(d for d in docs if d["partition"] == partition)
        self._state[partition] = state
        log.info("receipts own partitions %s", sorted(self._state))

    async def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._state.pop(p, None)

    async def _run(self) -> None:
        while True:
            await BATCH_RETRY.run(
                self._next_batch, what="receipts batch", log=log, on_failure=self._batch_failed
            )

    async def _next_batch(self) -> None:
        if self._rewind_first:
            await self._rewind()
            self._rewind_first = False
        await self._step()

    async def _batch_failed(self, failed: Failed) -> Then | None:
        # The transaction was aborted, so tallies and offsets stay as committed; rebuild from
        # them and go on rather than end the agent.
        self._rewind_first = True
        return None

    async def _rewind(self) -> None:
        """Rebuild the tallies of every assigned partition (through ownership: drop, then
        restore from the tallies topic) and go back to the group's committed offsets."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        await self._ownership.reset(self._state.keys() | {tp.partition for tp in assigned})
        committed = {tp: await self._consumer.committed(tp) for tp in assigned}
        for tp, offset in committed.items():
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)

    async def _step(self) -> None:
        assert self._consumer is not None and self._producer is not None
        data = await self._consumer.getmany(timeout_ms=int(self._flush_every_s * 1000))
        if not data:
            return
        changed: dict[int, set[AlertVersion]] = {}
        counts: Counter[tuple[str, str]] = Counter()
        offsets: dict[TopicPartition, int] = {}
        for tp, records in data.items():
            state = self._state.get(tp.partition)
            # aiokafka may fetch a new partition while the listener still waits for its
            # restore: wait for ownership (never restore here); if the partition went to
            # another worker meanwhile, rebuild from the committed state and retry
            if state is None and await self._ownership.restored(self.component, tp.partition):
                state = self._state.get(tp.partition)
            if state is None:
                raise PartitionNotRestored(f"receipts partition {tp.partition} not restored")
            receipts = []
            for record in records:
                try:
                    receipts.append(parse_receipt(record.value))
                except MalformedInput as exc:
                    self.metrics.receipts_invalid.inc()
                    log.warning("bad receipt %s@%d: %s", tp, record.offset, exc.message)
            keys, batch_counts = state.fold(receipts)
            changed[tp.partition] = keys
            counts.update(batch_counts)
            offsets[tp] = records[-1].offset + 1
        now = time.time()
        async with self._producer.transaction():
            for p, keys in changed.items():
                tallies = self._state[p].tallies
                for key in keys:
                    await self._producer.send(
                        self.settings.delivery_topic,
                        orjson.dumps(tallies[key].to_doc(key, p, now)),
                        key=tally_key(key[0], key[1], p),
                        partition=p,
                    )
            await self._producer.send_offsets_to_transaction(offsets, self.group_id)
        self.metrics.receipts_folded(counts)
