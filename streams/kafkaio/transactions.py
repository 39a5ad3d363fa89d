"""Hanging transactions: records a previous owner left in a partition with no end marker.

A Kafka transaction ends with a COMMIT or ABORT *marker* the coordinator writes into every
partition of the transaction. Until it is there, ``read_committed`` readers stop at the
partition's *last stable offset* (LSO) before the transaction's first record. Kafka can skip
the markers: a broker in controlled shutdown with no other replica to take over leaves its
partitions without a leader, and the transaction coordinator, finding no leader, takes the
partitions for deleted ("Couldn't find leader endpoint ... can be skipped") and records the
transaction as complete (seen with Kafka 4.4 on a single broker stopped during a fan-out).
After a restart, nothing ends that transaction: the new owner's ``InitProducerId`` fences the
old epoch but aborts nothing, since the coordinator thinks nothing is open. Its records stay
in the log and the LSO stays before them, so

* a restore that reads to the end "as of now" (the LSO) misses the last cursor, and
* the records become visible with the *next* marker that producer id writes to the partition:
  the new owner's first commit would publish the old chunk a second time.

:func:`abort_hanging` ends such leftovers before a partition's new owner reads its state: right
after ``producer.start()`` (the fence), any gap between the LSO and the high watermark on a
partition only this transactional id writes is a hanging transaction of its own producer id,
and one aborted transaction touching that partition ends it (the abort marker of a producer id
covers all its records since its last marker). Nobody can have read those records as committed
(``read_committed`` readers stop before them), so aborting them loses nothing that was seen;
the new owner emits them again from the last committed cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.errors import HangingTransaction
from streams.kafkaio.clients import (
    FIRST_REQUEST_BACKOFF_MS,
    make_consumer,
    make_reader,
    start_all,
)
from streams.settings.model import Settings

__all__ = ["Gap", "StableOffsets", "abort_hanging", "stable_gaps"]

log = logging.getLogger(__name__)

#: The key of the record each aborting transaction writes (it is aborted: no reader sees it).
ABORT_KEY = b"loa:abort-hanging"
#: How long a partition may take to settle after the aborting transaction (its markers are
#: written after the coordinator answered the abort).
SETTLE_S = 30.0


@dataclass(frozen=True, slots=True)
class Gap:
    """A partition whose last stable offset trails its high watermark."""

    partition: TopicPartition
    stable: int
    end: int

    def __str__(self) -> str:
        tp = self.partition
        return f"{tp.topic}[{tp.partition}] offsets {self.stable}..{self.end - 1}"


class StableOffsets:
    """Last stable offset and high watermark of partitions, from one pair of started consumers
    (``read_committed`` and ``read_uncommitted``): a worker keeps one for its restores, so a
    check is two ListOffsets round trips, not two client start-ups."""

    def __init__(self, settings: Settings, topics: Sequence[str] = ()) -> None:
        self._settings = settings
        self._topics = tuple(topics)
        self._clients: tuple[AIOKafkaConsumer, AIOKafkaConsumer] | None = None

    async def start(self) -> None:
        """Start the consumers (in the running loop, as aiokafka requires) and learn the
        leaders of ``topics``, so a takeover's first check does not wait for metadata."""
        if self._clients is None:
            backoff = {"retry_backoff_ms": FIRST_REQUEST_BACKOFF_MS}
            committed = make_reader(self._settings, **backoff)
            uncommitted = make_consumer(
                self._settings, isolation_level="read_uncommitted", **backoff
            )
            await start_all(committed, uncommitted)
            self._clients = (committed, uncommitted)
            if self._topics:
                await self.gaps([TopicPartition(topic, 0) for topic in self._topics])

    async def stop(self) -> None:
        if self._clients is not None:
            clients, self._clients = self._clients, None
            await asyncio.gather(*(client.stop() for client in clients))

    async def gaps(self, partitions: Sequence[TopicPartition]) -> list[Gap]:
        """The ``partitions`` whose last stable offset is below their high watermark."""
        await self.start()
        assert self._clients is not None
        committed, uncommitted = self._clients
        stable, end = await asyncio.gather(
            committed.end_offsets(list(partitions)), uncommitted.end_offsets(list(partitions))
        )
        return [Gap(tp, stable[tp], end[tp]) for tp in partitions if stable[tp] < end[tp]]


async def stable_gaps(settings: Settings, partitions: Sequence[TopicPartition]) -> list[Gap]:
    """:meth:`StableOffsets.gaps` with clients of its own (a one-off check)."""
    offsets = StableOffsets(settings)
    await offsets.start()
    try:
        return await offsets.gaps(partitions)
    finally:
        await offsets.stop()


async def abort_hanging(
    offsets: StableOffsets,
    producer: AIOKafkaProducer,
    partitions: Sequence[TopicPartition],
    *,
    name: str,
    own: Sequence[TopicPartition] = (),
) -> list[Gap]:
    """End what an earlier epoch of ``producer``'s transactional id left open in ``partitions``.

    Call right after ``producer.start()``. Every partition of ``partitions`` with a gap between
    its LSO and high watermark gets a record in one transaction that is then aborted; a gap
    another producer holds (a transaction it is still writing) is left as it is. ``own`` are
    the partitions only this transactional id writes: they must be stable afterwards, else
    :class:`~streams.errors.HangingTransaction` (retriable). ``name`` says whose partitions
    they are in the log. Returns the gaps found (empty: nothing to do).
    """
    gaps = await offsets.gaps(partitions)
    if not gaps:
        return []
    await producer.begin_transaction()
    try:
        sent = [
            await producer.send(tp.topic, None, key=ABORT_KEY, partition=tp.partition)
            for tp in (gap.partition for gap in gaps)
        ]
        await asyncio.gather(*sent)  # each partition is part of the transaction before the abort
    finally:
        await producer.abort_transaction()
    log.warning(
        "%s: aborted what an earlier owner left open with no end marker (Kafka skips the "
        "markers when a broker stops with no other replica to lead): %s",
        name,
        "; ".join(str(gap) for gap in gaps),
    )
    await _settle(offsets, [tp for tp in own if any(g.partition == tp for g in gaps)])
    return gaps


async def _settle(offsets: StableOffsets, partitions: Sequence[TopicPartition]) -> None:
    """Wait until ``partitions`` have no open transaction (bounded by :data:`SETTLE_S`)."""
    deadline = time.monotonic() + SETTLE_S
    while partitions:
        left = await offsets.gaps(partitions)
        if not left:
            return
        if time.monotonic() > deadline:
            raise HangingTransaction(
                f"{'; '.join(str(g) for g in left)} still open {SETTLE_S:.0f} s after aborting "
                "the previous owner's transaction: another producer writes there"
            )
        await asyncio.sleep(0.2)
