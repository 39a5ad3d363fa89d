"""Kafka plumbing shared by the agents and the CLI: producers, topics, reading a topic to its end.

Every producer that writes Loa state or tasks uses ``acks="all"`` and idempotence (aiokafka
defaults to ``acks=1`` without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.records import Priority
from streams.settings import Settings

__all__ = ["cluster_id", "create_topics", "make_producer", "read_to_end", "topic_specs"]

log = logging.getLogger(__name__)

#: Broker-side limit Loa's batches must fit in (the dev broker allows 2 MiB per message batch).
_REQUEST_OVERHEAD = 64 * 1024


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer sized for ``LOA_EMIT_BATCH_BYTES`` batches."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "max_batch_size": settings.emit_batch_bytes,
        "max_request_size": settings.emit_batch_bytes + _REQUEST_OVERHEAD,
        "linger_ms": 5,
        "request_timeout_ms": 30_000,
        "client_id": f"{settings.app_id}-producer",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def appended_batches(
    producer: AIOKafkaProducer,
    records: Iterable[tuple[bytes, bytes | None]],
    *,
    timestamp_ms: int | None = None,
) -> Iterator[Any]:
    """Full aiokafka ``BatchBuilder`` objects (public batch API), one ``append`` per record."""
    builder = producer.create_batch()
    for key, value in records:
        if builder.append(timestamp=timestamp_ms, key=key, value=value) is None:
            yield builder
            builder = producer.create_batch()
            builder.append(timestamp=timestamp_ms, key=key, value=value)
    if builder.record_count():
        yield builder


def make_reader(settings: Settings, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer without a group that reads committed records from the start of what it is
    assigned (replays, read-backs, status): the one place those options are chosen."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic Loa uses, with its partitions and cleanup policy."""
    p, rf = settings.partitions, settings.replication_factor
    compact = {"cleanup.policy": "compact"}
    specs = [
        # one partition: alerts are few and their lifecycle (re-publish, Update, Cancel) needs
        # a total order; the fan-out, not ingest, is where the volume is
        # records up to 16 MiB get in, so an oversized alert is a clear ``too_large``
        # rejection instead of a producer error the agency may never read
        NewTopic(settings.inbound_topic, 1, rf, topic_configs={"max.message.bytes": "16777216"}),
        NewTopic(settings.rejected_topic, 1, rf),
        NewTopic(settings.accepted_topic, 1, rf, topic_configs=compact),
        NewTopic(settings.orders_topic, p, rf),
        NewTopic(settings.progress_topic, p, rf, topic_configs=compact),
        NewTopic(settings.directory_topic, p, rf, topic_configs=compact),
        NewTopic(settings.channels_topic, 1, rf, topic_configs=compact),
        # One partition: the registry is small and every worker replays all of it.
        NewTopic(settings.agencies_topic, 1, rf, topic_configs=compact),
    ]
    specs += [NewTopic(settings.sends_topic(prio.value), p, rf) for prio in Priority]
    # Receipts share the send tasks' partitioning; tallies of receipts partition p go to p.
    specs += [
        NewTopic(settings.receipts_topic, p, rf),
        NewTopic(settings.delivery_topic, p, rf, topic_configs=compact),
    ]
    return specs


async def create_topics(settings: Settings) -> list[str]:
    """Create missing topics (idempotent). Returns the names that were created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            # another process may win the race; the topic is there either way
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def cluster_id(settings: Settings) -> str:
    """The Kafka cluster id (what a directory snapshot says it was taken from)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_cluster()
    finally:
        await admin.close()
    value = described.get("cluster_id")
    if not isinstance(value, str) or not value:
        raise RuntimeError(f"the cluster at {settings.bootstrap_servers} names no cluster id")
    return value


async def read_to_end(
    settings: Settings,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    until: Callable[[], bool] | None = None,
    timeout_s: float = 60.0,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield every record of ``topic`` from the beginning to its end offsets as of the start.

    With ``until``, keep reading past the end until ``until()`` is true or ``timeout_s`` passes.
    """
    consumer = make_reader(
        settings, isolation_level=isolation_level, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        counts = {spec.name: spec.num_partitions for spec in topic_specs(settings)}
        tps = [TopicPartition(topic, p) for p in range(counts[topic])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=200, max_records=100_000)
            for records in batch.values():
                for record in records:
                    yield record
            if until is not None:
                if until() or loop.time() > deadline:
                    return
                continue
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} to its end took over {timeout_s} s")
    finally:
        await consumer.stop()


async def read_partition(
    settings: Settings, topic: str, partition: int
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield the committed records of one partition, from its start to its end as of now."""
    consumer = make_reader(settings)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in batch.get(tp, ()):
                yield record
    finally:
        await consumer.stop()
