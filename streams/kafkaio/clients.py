"""Every Kafka client Loa makes, made here: producers, consumers, admin, raw fetchers, Faust's.

Where it sits: under every agent, the CLI and the benchmarks. :func:`client_options` is the one
place connection options (bootstrap servers; security when the cluster is secured) are chosen,
and every factory below starts from it, so a client cannot be made that skips them.

Every producer that writes Loa state or tasks uses ``acks="all"`` and idempotence (aiokafka
defaults to ``acks=1`` without it). Also here: the topics Loa uses and reading a topic to its end.
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

from streams.kafkaio.rawkafka import RawFetcher
from streams.records import Priority
from streams.settings import Settings

__all__ = [
    "appended_batches",
    "client_options",
    "create_topics",
    "faust_broker_options",
    "make_admin",
    "make_consumer",
    "make_producer",
    "make_raw_fetcher",
    "make_reader",
    "read_partition",
    "read_to_end",
    "topic_specs",
]

log = logging.getLogger(__name__)

#: Broker-side limit Loa's batches must fit in (the dev broker allows 2 MiB per message batch).
_REQUEST_OVERHEAD = 64 * 1024


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every Kafka client of Loa gets (the one place to add security)."""
    return {"bootstrap_servers": settings.bootstrap_servers}


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer sized for ``LOA_EMIT_BATCH_BYTES`` batches."""
    options: dict[str, Any] = {
        **client_options(settings),
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


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits on its own (Loa commits offsets in its transactions, or
    not at all); ``topics``, ``group_id`` and the rest as ``AIOKafkaConsumer`` takes them."""
    options: dict[str, Any] = {**client_options(settings), "enable_auto_commit": False}
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def make_reader(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that reads committed records from the start of what it is assigned or
    subscribed to (replays, read-backs, status, group consumers of Loa's own topics)."""
    options: dict[str, Any] = {"auto_offset_reset": "earliest", "isolation_level": "read_committed"}
    options.update(overrides)
    return make_consumer(settings, *topics, **options)


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client (topics, consumer group offsets)."""
    return AIOKafkaAdminClient(**{**client_options(settings), **overrides})


def make_raw_fetcher(settings: Settings, client_id: str, **overrides: Any) -> RawFetcher:
    """A raw Fetch client (:class:`streams.kafkaio.rawkafka.RawFetcher`)."""
    return RawFetcher({**client_options(settings), "client_id": client_id}, **overrides)


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """The broker part of the Faust app's settings (its consumer group and producer)."""
    return {
        "broker": f"kafka://{settings.bootstrap_servers}",
        "producer_acks": -1,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
    }


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
    admin = make_admin(settings)
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
