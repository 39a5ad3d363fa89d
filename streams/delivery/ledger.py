"""What settled: the records each settled attempt writes, held until the offset that covers them.

Where it sits: the delivery worker's end. The answers of :mod:`streams.delivery.calls` (and the
tasks that expired before a call) are settled here with the pure rules of
:mod:`streams.delivery.retry`: a receipt; a retry copy on a retry tier when the task goes on;
a task on the recipient's next channel when it falls back. The records wait in a
:class:`~streams.delivery.watermark.CommitTracker` beside their offset; the worker commits both
in one transaction, only below the oldest unsettled task of each partition.

Guarantee: a task is settled at most once per fetch (its key leaves :attr:`Ledger.active`
and joins :attr:`Ledger.seen`), so a repeat of a fresh task within a run is a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import TopicPartition

from streams.delivery.calls import Answer, Item
from streams.delivery.metrics import DeliveryMetrics, HotMetrics
from streams.delivery.policy import DeliveryStats
from streams.delivery.retry import RetryPolicy, Settled, deadline, settle, settled_receipt
from streams.delivery.watermark import CommitTracker
from streams.kafkaio.clients import appended_batches
from streams.settings.model import Settings

__all__ = ["NEAR_EXPIRY_S", "Ledger", "Record", "Seen"]

#: A retry due less than this before its task's deadline is counted as near expiry (paged).
NEAR_EXPIRY_S = 600.0

#: A record to write: topic, value, key, partition.
Record = tuple[str, bytes, bytes | None, int]


class Seen:
    """The most recent ``capacity`` idempotency keys (insertion-ordered dict as a FIFO)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: dict[str, None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """True when ``key`` is new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            del self._keys[next(iter(self._keys))]
        return True

    def clear(self) -> None:
        self._keys.clear()


class Ledger:
    """The settled attempts of one run: their records by offset, the keys seen, the counts."""

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        hot: HotMetrics,
        *,
        name: str,
        seen: Seen,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self.settings, self.policy, self.metrics, self.hot = settings, policy, metrics, hot
        self.name, self.seen, self.clock, self.rand = name, seen, clock, rand
        self.stats = DeliveryStats()
        #: (topic, value, key, partition) records per settled task, released with its offset
        self.tracker: CommitTracker[TopicPartition, Record] = CommitTracker()
        #: Fresh tasks fetched and not yet settled, by key (a repeat of one is a duplicate).
        self.active: dict[str, Item] = {}
        #: Retry copies written and not yet fetched back (no idle exit while some are out).
        self.retries_out = 0

    def settle_answers(self, answers: list[Answer], current: Callable[[Item], bool]) -> None:
        """Settle each answer whose task is still ``current`` (a revoked one is the next
        owner's to call again)."""
        now = self.clock()
        for item, outcome, floor_s, called in answers:
            if not current(item):
                continue
            settled = settle(
                item.task,
                outcome,
                now=now,
                rand=self.rand(),
                policy=self.policy,
                floor_s=floor_s,
                called=called,
            )
            self.settle(item, settled, now, called=called)

    def expire(self, item: Item, now: float) -> None:
        """``item`` is past its alert's ``expires`` (or its retry limit): failed, no call."""
        attempt = int(item.task.get("attempt", 0)) + 1
        self.settle(item, Settled("failed", "expired", attempt=attempt), now)

    def settle(self, item: Item, settled: Settled, now: float, *, called: bool = True) -> None:
        """Queue the records of one settled attempt and mark its offset settled (``called``:
        False for a call an open circuit refused; it is no failed attempt of the task)."""
        task, partition = item.task, item.tp.partition
        channel, priority = str(task["channel"]), str(task["priority"])
        records: list[Record] = []
        if settled.retry is not None and settled.tier_s is not None:
            topic = self.settings.retry_topic(priority, settled.tier_s)
            records.append((topic, orjson.dumps(settled.retry), item.key, partition))
            self.retries_out += 1
            if called:
                self.stats.retries += 1
                self.metrics.retries.labels(channel, settled.reason or "unknown").inc()
            self.metrics.retries_scheduled.labels(channel, tier_label(topic)).inc()
            if deadline(task, self.policy, now) - float(settled.retry["due_at"]) < NEAR_EXPIRY_S:
                self.metrics.near_expiry.labels(channel).inc()
        if settled.fallback is not None:  # the recipient's next channel, same lineage
            topic = self.settings.sends_topic(priority)
            records.append((topic, orjson.dumps(settled.fallback), item.key, partition))
            self.stats.fallbacks += 1
            self.metrics.fallbacks.labels(channel).inc()
        if settled.outcome != "retrying":
            if settled.outcome == "failed":
                self.stats.failed += 1
                self.metrics.failures.labels(channel, settled.reason or "unknown").inc()
            else:
                self.stats.delivered += 1
            self.hot.sends(channel, settled.outcome).inc()
            self.stats.by_priority[priority] = self.stats.by_priority.get(priority, 0) + 1
        doc = settled_receipt(task, settled, worker=self.name, at=now)
        if item.retry:  # the task had a retrying receipt: `loa status` counts tasks by this
            doc["from_retry"] = True
        records.append((self.settings.receipts_topic, orjson.dumps(doc), item.key, partition))
        key = str(task["idempotency_key"])
        if self.active.get(key) is item:
            del self.active[key]
        self.seen.add(key)
        self.tracker.settle(item.tp, item.offset, records)

    async def commit(self, producer: Any, group: str) -> None:
        """One transaction: the offsets below every unsettled task and the records of the
        tasks they cover (nothing when nothing settled)."""
        offsets, records = self.tracker.take()
        if not records and not offsets:
            return
        async with producer.transaction():
            # record batches per partition (the public batch API), not a send per record:
            # a settled task writes one to three records, thousands a second
            by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
            for topic, value, key, partition in records:
                by_partition.setdefault((topic, partition), []).append((key, value))
            for (topic, partition), pairs in by_partition.items():
                for batch in appended_batches(producer, pairs):
                    await producer.send_batch(batch, topic, partition=partition)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, group)
        self.tracker.committed(offsets)


def tier_label(topic: str) -> str:
    """The delay part of a retry tier's topic name (``1s``, ``250ms``): a metric label."""
    return topic.rpartition(".")[2]
