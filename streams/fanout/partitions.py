"""The fan-out's owned order partitions: per partition its fencing producer and its order queue,
restored from Kafka when :mod:`streams.kafkaio.ownership` hands the partition over.

Where it sits: :mod:`streams.kafkaio.ownership` -> [partitions] <- the ``fanout`` agent's orders;
the
scheduler (:mod:`streams.fanout.scheduler`) runs the queues held here, chunk by chunk.

* **Restore.** Taking partition *p* starts its transactional producer (transactional id
  ``<app>-fanout-<p>``: InitProducerId fences the previous owner's), aborts what that owner
  left open (:mod:`streams.kafkaio.transactions`), then reads *p*'s orders and the committed
  cursors of the progress topic: unfinished orders resume after their cursor, finished ones
  are remembered (a re-publish is not emitted again).
* **The only way in.** A partition is taken only by :meth:`FanoutPartitions.restore`, which
  :mod:`streams.kafkaio.ownership` calls; :meth:`FanoutPartitions.submit` never claims one (the
  agent
  waits for the restore first: :meth:`streams.kafkaio.ownership.Ownership.restored`).
* **Revoke.** The partition's producer is stopped: an open transaction is aborted, its chunk
  stops at the next boundary and the next owner resumes the committed cursor.

Guarantee: an order is in exactly one of: the restored queue of its partition's owner, or the
orders topic that owner's restore reads; nothing here emits tasks or commits a cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from streams.fanout.queue import OrderKey, PartitionQueue, order_key
from streams.kafkaio.clients import make_producer, read_to_end
from streams.kafkaio.transactions import StableOffsets, abort_hanging
from streams.metrics import Metrics
from streams.records import FanoutOrder, Priority, Progress
from streams.settings.model import Settings

__all__ = ["FanoutPartitions", "OwnedPartition"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class OwnedPartition:
    """An owned order partition: its transactional producer and its order queue."""

    producer: AIOKafkaProducer
    queue: PartitionQueue = field(default_factory=PartitionQueue)
    restored: asyncio.Event = field(default_factory=asyncio.Event)


class FanoutPartitions:
    """The order partitions this worker owns (a
    :class:`streams.kafkaio.ownership.PartitionOwner`)."""

    component = "fanout"

    def __init__(self, settings: Settings, metrics: Metrics, *, woken: Callable[[], None]) -> None:
        self._settings = settings
        self._metrics = metrics
        #: Called when there is new work: a restored partition, a new order.
        self._woken = woken
        #: The owned partitions (the scheduler runs their queues).
        self.owned: dict[int, OwnedPartition] = {}
        self._seq = 0
        #: One lock per partition: partitions restore in parallel, one partition once at a time.
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: LSO and high watermark probes for the restores (hanging transactions)
        self._offsets = StableOffsets(
            settings, [settings.progress_topic, *(settings.sends_topic(x.value) for x in Priority)]
        )

    async def start(self) -> None:
        await self._offsets.start()

    async def stop(self) -> None:
        for part in self.owned.values():
            await part.producer.stop()
        self.owned.clear()
        await self._offsets.stop()

    async def restore(self, partition: int) -> None:
        """Own ``partition``: fence its previous owner, reload its unfinished orders and their
        committed cursors. Idempotent; a failure leaves the partition unowned (retried)."""
        async with self._locks[partition]:
            part = self.owned.get(partition)
            if part is not None and part.restored.is_set():
                return
            if part is not None:  # a failed restore left it half way: start again
                self.owned.pop(partition)
                await part.producer.stop()
            producer = make_producer(
                self._settings, transactional_id=f"{self._settings.app_id}-fanout-{partition}"
            )
            began = time.monotonic()
            try:
                await producer.start()  # InitProducerId: fences a previous owner's producer
                fenced = time.monotonic()
                await self._abort_hanging(partition, producer)
                checked = time.monotonic()
                self.owned[partition] = OwnedPartition(producer)
                await self._load_orders(partition)
                log.info(
                    "fanout partition %d restored: fenced in %.2f s, transactions checked in "
                    "%.2f s, orders read in %.2f s",
                    partition,
                    fenced - began,
                    checked - fenced,
                    time.monotonic() - checked,
                )
            except BaseException:
                self.owned.pop(partition, None)
                await producer.stop()
                raise
            self._woken()

    async def revoke(self, partitions: set[int]) -> None:
        """Let go of ``partitions``: their chunks stop at the next boundary (the producer is
        stopped, so an open transaction is aborted and the next owner resumes the cursor)."""
        for p in partitions:
            async with self._locks[p]:
                part = self.owned.pop(p, None)
                if part is not None:
                    await part.producer.stop()

    def submit(self, order: FanoutOrder) -> bool:
        """Take an order from the agent (a repeat of a known or finished order is ignored).

        Never claims the order's partition: the agent first waits until this worker restored
        it (:meth:`streams.kafkaio.ownership.Ownership.restored`), so an order is never both missed
        by
        the restore and dropped here. False when the partition is not restored here (revoked
        meanwhile): its owner's restore reads the order from the orders topic.
        """
        part = self.owned.get(order.partition)
        if part is None or not part.restored.is_set():
            log.info(
                "fanout %s: partition %d is not restored here; its owner's restore reads it",
                order.alert_id,
                order.partition,
            )
            return False
        if not part.queue.knows(order):
            self._add(part, order, None)
            self._woken()
        return True

    async def _abort_hanging(self, p: int, producer: AIOKafkaProducer) -> None:
        """End what the previous owner's producer left open with no end marker in partition
        ``p`` of the progress and send-task topics (only this transactional id writes progress
        ``p``), so the restore reads the last committed cursor and the partition's next commit
        does not publish that owner's last chunk a second time
        (:mod:`streams.kafkaio.transactions`)."""
        settings = self._settings
        progress = TopicPartition(settings.progress_topic, p)
        sends = [TopicPartition(settings.sends_topic(x.value), p) for x in Priority]
        gaps = await abort_hanging(
            self._offsets,
            producer,
            [progress, *sends],
            name=f"fanout partition {p}",
            own=[progress],
        )
        if gaps:
            self._metrics.hanging_aborted.labels(self.component).inc(len(gaps))

    async def _load_orders(self, p: int) -> None:
        settings = self._settings
        part = self.owned[p]
        # both topics are read at once: a takeover waits for the longer read, not the sum
        cursors, orders = await asyncio.gather(
            _values(settings, settings.progress_topic, p),
            _values(settings, settings.orders_topic, p),
        )
        progress: dict[OrderKey, Progress] = {}
        for value in cursors:
            try:
                done = Progress.from_json(value)
            except Exception:
                continue  # not a progress record: nothing to resume from
            progress[(done.alert_id, done.version, done.partition)] = done
        restored = 0
        for value in orders:
            try:
                order = FanoutOrder.from_json(value)
            except Exception:
                continue  # the agent reports bad orders when it reads them
            if order.partition != p:
                continue  # misrouted: the agent rejects it (it is another partition's)
            if part.queue.knows(order):
                continue
            committed = progress.get(order_key(order))
            if committed is not None and committed.done:
                part.queue.add_finished(order, committed)
                continue
            self._add(part, order, committed)
            restored += 1
        part.restored.set()
        if restored:
            log.info("partition %d: resumed %d unfinished orders", p, restored)

    def _add(self, part: OwnedPartition, order: FanoutOrder, committed: Progress | None) -> None:
        self._seq += 1
        part.queue.add(order, committed, seq=self._seq, now=time.time())


async def _values(settings: Settings, topic: str, p: int) -> list[bytes]:
    """The committed values of partition ``p`` of ``topic`` (a tombstone reads as empty)."""
    return [
        record.value or b""
        async for record in read_to_end(settings, topic, partitions=[p], timeout_s=None)
    ]
