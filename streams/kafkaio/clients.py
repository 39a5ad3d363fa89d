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
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiokafka
import aiokafka.errors as kafka_errors
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)

from streams.errors import TopicMissing
from streams.kafkaio.internals import AIOKafkaClient, LeaveGroupV3
from streams.kafkaio.rawkafka import RawFetcher
from streams.kafkaio.security import faust_credentials, security_options
from streams.records import Priority
from streams.settings.model import Settings
from streams.topics import (
    CENSUS_MAX_MESSAGE_BYTES,
    Replication,
    TopicShape,
    mismatches,
    partition_mismatches,
    replication,
)

__all__ = [
    "TopicState",
    "appended_batches",
    "check_topics",
    "checked_layout",
    "client_options",
    "cluster_id",
    "create_topics",
    "ensure_decision_topics",
    "faust_broker_options",
    "init_topics",
    "latest_values",
    "leave_group",
    "make_admin",
    "make_consumer",
    "make_producer",
    "make_protocol_client",
    "make_raw_fetcher",
    "make_reader",
    "read_to_end",
    "require_topics",
    "start_all",
    "topic_specs",
    "topic_states",
    "topics_error",
    "topics_problem",
]

log = logging.getLogger(__name__)

#: Broker-side limit Loa's batches must fit in (the dev broker allows 2 MiB per message batch).
_REQUEST_OVERHEAD = 64 * 1024


async def start_all(*clients: Any) -> None:
    """Start aiokafka clients in order; if one fails, stop them all before re-raising, so a
    failed start (broker unreachable, not authorized) leaves no "Unclosed AIOKafka..." behind."""
    try:
        for client in clients:
            await client.start()
    except BaseException:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.stop()
        raise


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every Kafka client of Loa gets: the address and the security of
    :mod:`streams.kafkaio.security` (TLS, SASL)."""
    return {"bootstrap_servers": settings.bootstrap_servers, **security_options(settings)}


#: retry_backoff_ms of short-lived readers: their first request always finds no metadata yet
FIRST_REQUEST_BACKOFF_MS = 10


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
    records: Iterable[tuple[bytes | None, bytes | None]],
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


def make_protocol_client(settings: Settings, client_id: str) -> Any:
    """aiokafka's low-level client, for requests its admin client lacks (ACLs, LeaveGroup v3);
    call ``bootstrap()`` then ``send(node, request)``, and ``close()``."""
    if AIOKafkaClient is None:
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no aiokafka.client.AIOKafkaClient")
    return AIOKafkaClient(**client_options(settings), client_id=client_id)


def make_raw_fetcher(settings: Settings, client_id: str, **overrides: Any) -> RawFetcher:
    """A raw Fetch client (:class:`streams.kafkaio.rawkafka.RawFetcher`)."""
    return RawFetcher({**client_options(settings), "client_id": client_id}, **overrides)


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """The broker part of the Faust app's settings (its consumer group and producer)."""
    return {
        "broker": [f"kafka://{host}" for host in settings.bootstrap_servers.split(",")],
        **faust_credentials(settings),
        "producer_acks": -1,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "consumer_group_instance_id": settings.group_instance_id,
    }


#: ``min.compaction.lag.ms`` of the directory changes topic: the broker's log cleaner leaves a
#: record alone for this long after it was written, so a bulk load is not rewritten right
#: after it lands, when a new deployment's first alerts are sent.
DIRECTORY_COMPACTION_LAG_MS = 3_600_000


def topic_specs(settings: Settings, rep: Replication | None = None) -> list[NewTopic]:
    """Every topic Loa uses, with its partitions, cleanup policy and (given ``rep``, else the
    settings' explicit values) replication."""
    rep = rep or Replication(settings.replication_factor or 1, settings.min_insync_replicas or 1)
    p, rf = settings.partitions, rep.factor
    isr = {"min.insync.replicas": str(rep.min_insync)}
    compact = {"cleanup.policy": "compact", **isr}
    specs = [
        # one partition: alerts are few and their lifecycle (re-publish, Update, Cancel) needs
        # a total order; the fan-out, not ingest, is where the volume is
        # records up to 16 MiB get in, so an oversized alert is a clear ``too_large``
        # rejection instead of a producer error the agency may never read
        NewTopic(
            settings.inbound_topic, 1, rf, topic_configs={"max.message.bytes": "16777216", **isr}
        ),
        NewTopic(settings.rejected_topic, 1, rf, topic_configs=isr),
        NewTopic(settings.accepted_topic, 1, rf, topic_configs=compact),
        NewTopic(settings.orders_topic, p, rf, topic_configs=isr),
        NewTopic(settings.progress_topic, p, rf, topic_configs=compact),
        # A directory load is left uncompacted for its first hour: compacting a fresh load
        # rewrites all of it (10M subscribers: 1.7 GB, a core for tens of seconds) while the
        # first alerts of a new deployment run (docs/benchmarks.md, "The first alert").
        NewTopic(
            settings.directory_topic,
            p,
            rf,
            topic_configs={**compact, "min.compaction.lag.ms": str(DIRECTORY_COMPACTION_LAG_MS)},
        ),
        NewTopic(settings.channels_topic, 1, rf, topic_configs=compact),
        # One partition, one record per directory partition: every worker reads all of it.
        # A record is a whole partition's census (megabytes); small segments let compaction
        # drop the superseded ones soon.
        NewTopic(
            settings.census_topic,
            1,
            rf,
            topic_configs={
                **compact,
                "max.message.bytes": str(CENSUS_MAX_MESSAGE_BYTES),
                "segment.bytes": str(2 * CENSUS_MAX_MESSAGE_BYTES),
            },
        ),
        # One partition: the registry is small and every worker replays all of it.
        NewTopic(settings.agencies_topic, 1, rf, topic_configs=compact),
        # the agency console (streams.console): users and drafts are small tables every
        # console replays whole; the audit trail is append-only and kept (never compacted)
        NewTopic(settings.console_users_topic, 1, rf, topic_configs=compact),
        NewTopic(settings.console_drafts_topic, 1, rf, topic_configs=compact),
        NewTopic(settings.console_audit_topic, 1, rf, topic_configs={"retention.ms": "-1", **isr}),
    ]
    specs += [
        NewTopic(settings.sends_topic(prio.value), p, rf, topic_configs=isr) for prio in Priority
    ]
    # Receipts share the send tasks' partitioning; tallies of receipts partition p go to p.
    specs += [
        NewTopic(settings.receipts_topic, p, rf, topic_configs=isr),
        NewTopic(settings.delivery_topic, p, rf, topic_configs=compact),
    ]
    # Delivery retry tiers share the send tasks' partitioning: a task's retry copy stays on
    # its partition, so its receipts do too (streams.delivery.retry).
    specs += [NewTopic(name, p, rf, topic_configs=isr) for name in settings.retry_topics]
    return specs


async def leave_group(settings: Settings, group: str, instance_id: str) -> None:
    """Remove the static member ``instance_id`` from ``group`` now (its partitions move to the
    other members at once instead of after the session timeout). Raises on a broker error."""
    client = make_protocol_client(settings, f"{settings.app_id}-leave")
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(0, group)  # 0: a consumer group coordinator
        response = await client.send(node, LeaveGroupV3(group, [instance_id]))
        codes = [response.error_code] + [code for _, _, code in response.members]
        errors = [kafka_errors.for_code(c) for c in codes if c]
        # unknown member: it is not in the group (already gone, or never joined): nothing to do
        errors = [e for e in errors if e is not kafka_errors.UnknownMemberIdError]
        if errors:
            raise errors[0]()
    finally:
        await client.close()


async def create_topics(settings: Settings) -> list[str]:
    """Create missing topics (idempotent). Returns the names that were created."""
    created, _ = await ensure_topics(settings)
    return created


async def ensure_topics(settings: Settings) -> tuple[list[str], list[str]]:
    """Create missing topics, replicated for the cluster's size (``streams.topics``); returns
    the created names and one line per existing topic that differs from the settings (or that
    this principal may not describe: an agency sees only its own topics and creates none)."""
    specs, existing, hidden, created = await _create_missing(settings)
    differing = mismatches(_wanted(specs), existing)
    differing += [f"{name}: not authorized to describe it (ACL)" for name in sorted(hidden)]
    return created, differing


#: What ``loa init`` and the read-only checks say of one topic of the layout.
TopicStatus = Literal["created", "present", "missing", "mis-sized", "hidden"]


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic of :func:`topic_specs` as the cluster has it."""

    #: the topic's name
    name: str
    #: created (by this call), present (as the settings want it), missing, mis-sized
    #: (partitions or replication differ) or hidden (this principal may not describe it)
    status: TopicStatus
    #: what differs, for mis-sized and hidden; empty otherwise
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.status}" + (f" ({self.detail})" if self.detail else "")


def topic_states(
    wanted: Iterable[TopicShape],
    existing: Mapping[str, TopicShape],
    hidden: Iterable[str] = (),
    created: Iterable[str] = (),
) -> list[TopicState]:
    """Pure: each wanted topic's state. Only the partition count makes a topic mis-sized for
    a worker (co-partitioning, cursors); a replication factor other than the cluster's is
    reported too, as ``loa init`` cannot change it without a reassignment."""
    hidden, created = set(hidden), set(created)
    states = []
    for want in wanted:
        have = existing.get(want.name)
        if want.name in created:
            states.append(TopicState(want.name, "created"))
        elif want.name in hidden:
            states.append(TopicState(want.name, "hidden", "not authorized to describe it (ACL)"))
        elif have is None:
            states.append(TopicState(want.name, "missing"))
        else:
            lines = mismatches([want], {want.name: have})
            detail = "; ".join(line.split(": ", 1)[1] for line in lines)
            states.append(TopicState(want.name, "mis-sized" if lines else "present", detail))
    return states


async def check_topics(settings: Settings) -> list[TopicState]:
    """Read-only: the state of every topic of the layout (nothing is created; what
    ``LOA_PARTITIONS`` and the cluster's replication want is compared with what exists)."""
    states, _ = await checked_layout(settings)
    return states


async def checked_layout(settings: Settings) -> tuple[list[TopicState], Replication]:
    """:func:`check_topics`, and the replication the cluster's size gives (what a worker
    writes new topics with)."""
    admin = make_admin(settings)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        rep = replication(settings, brokers)
        specs = topic_specs(settings, rep)
        existing, hidden = await _shapes(admin, [t.name for t in specs])
        return topic_states(_wanted(specs), existing, hidden), rep
    finally:
        await admin.close()


async def init_topics(settings: Settings) -> list[TopicState]:
    """Create the missing topics of the layout (idempotent, with the cluster's replication)
    and report every topic: created, present, mis-sized or hidden. Nothing existing is
    changed: a mis-sized topic is reported, never recreated (it holds data)."""
    specs, existing, hidden, created = await _create_missing(settings)
    return topic_states(_wanted(specs), existing, hidden, created)


async def _create_missing(
    settings: Settings,
) -> tuple[list[NewTopic], dict[str, TopicShape], set[str], list[str]]:
    """The layout's specs (replicated for the cluster's size), the topics' shapes as they are
    after creating the missing ones, the names this principal may not describe, and the
    names created."""
    admin = make_admin(settings)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        specs = topic_specs(settings, replication(settings, brokers))
        existing, hidden = await _shapes(admin, [t.name for t in specs])
        missing = [t for t in specs if t.name not in existing and t.name not in hidden]
        created = await _create(admin, missing)
        if len(created) < len(missing):  # another process created some: read them as they are
            existing, hidden = await _shapes(admin, [t.name for t in specs])
        return specs, existing, hidden, created
    finally:
        await admin.close()


def topics_problem(states: Iterable[TopicState], *, partitions_only: bool = False) -> str:
    """One sentence naming every missing and mis-sized topic (empty when there is none).
    ``partitions_only``: a replication factor other than the cluster's does not count (a
    worker runs on it)."""
    missing = [s.name for s in states if s.status == "missing"]
    sized = [
        s
        for s in states
        if s.status == "mis-sized" and (not partitions_only or "partitions" in s.detail)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} topic(s) missing: {', '.join(missing)}")
    if sized:
        shown = (
            "; ".join(
                f"{s.name} ({d})" for s in sized for d in s.detail.split("; ") if "partitions" in d
            )
            if partitions_only
            else "; ".join(f"{s.name} ({s.detail})" for s in sized)
        )
        parts.append(f"{len(sized)} topic(s) differ from the settings: {shown}")
    return "; ".join(parts)


#: What to do about topics that exist with other partitions than the settings.
MIS_SIZED_HINT = (
    "they hold data: set LOA_PARTITIONS to their partition count, or recreate them "
    "(docs/operations.md: Topics)"
)


def topics_error(
    states: list[TopicState], *, lead: str = "", partitions_only: bool = True
) -> TopicMissing | None:
    """The :class:`TopicMissing` (exit 6) naming every missing or mis-sized topic, with the
    hint that fits (``loa init`` makes missing topics; it never resizes one); None if none."""
    problem = topics_problem(states, partitions_only=partitions_only)
    if not problem:
        return None
    missing = any(s.status == "missing" for s in states)
    return TopicMissing(lead + problem, hint=None if missing else MIS_SIZED_HINT)


async def require_topics(settings: Settings) -> None:
    """What a read-only command checks first: every topic of the layout exists with the
    settings' partitions, else :class:`TopicMissing` (exit 6) naming each one. Creates nothing."""
    error = topics_error(await check_topics(settings))
    if error is not None:
        raise error


async def ensure_decision_topics(settings: Settings, senders: Iterable[str]) -> list[str]:
    """Create the decision topics (:meth:`Settings.decisions_topic`) of ``senders`` that are
    missing, one partition each, replicated like the rest; returns the names created. Raises
    what the broker refuses (not authorized, a name that collides with another topic)."""
    admin = make_admin(settings)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        rep = replication(settings, brokers)
        isr = {"min.insync.replicas": str(rep.min_insync)}
        names = sorted({settings.decisions_topic(sender) for sender in senders})
        existing, _ = await _shapes(admin, names)
        missing = [NewTopic(n, 1, rep.factor, topic_configs=isr) for n in names]
        missing = [t for t in missing if t.name not in existing]
        return await _create(admin, missing)
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> list[str]:
    """Create ``topics``; the names this call created (one another process created is not)."""
    if not topics:
        return []
    created = []
    response = await admin.create_topics(topics)
    for name, code, message in response.topic_errors:
        if not code:
            created.append(name)
        # another process may win the race; the topic is there either way
        elif for_code(code) is not TopicAlreadyExistsError:
            raise for_code(code)(f"{name}: {message or 'create refused'}")
    return created


async def check_worker_topics(settings: Settings) -> tuple[list[str], Replication]:
    """What keeps a worker from starting (missing topics, partition counts that differ from
    ``LOA_PARTITIONS``: orders and directory must be co-partitioned), empty when it can run;
    and the replication the cluster's size gives."""
    admin = make_admin(settings)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        specs = topic_specs(settings)
        existing, _ = await _shapes(admin, [t.name for t in specs])
        problems = partition_mismatches(_wanted(specs), existing)
        return problems, replication(settings, brokers)
    finally:
        await admin.close()


def _wanted(specs: list[NewTopic]) -> list[TopicShape]:
    return [TopicShape(t.name, t.num_partitions, t.replication_factor) for t in specs]


async def _shapes(
    admin: AIOKafkaAdminClient, names: list[str]
) -> tuple[dict[str, TopicShape], set[str]]:
    """Partitions and replication factor of those of ``names`` that exist, and the names this
    principal is not authorized to describe (they may exist)."""
    shapes, hidden = {}, set()
    for topic in await admin.describe_topics(names):
        name = topic.get("topic") or topic.get("name")
        partitions = topic["partitions"]
        if topic["error_code"] == TopicAuthorizationFailedError.errno:
            hidden.add(name)
        # a transient error (leader election) still describes an existing topic
        gone = (UnknownTopicOrPartitionError.errno, TopicAuthorizationFailedError.errno)
        if topic["error_code"] in gone or not partitions:
            continue
        replicas = max(len(p.get("replicas") or p.get("replica_nodes") or ()) for p in partitions)
        shapes[name] = TopicShape(name, len(partitions), replicas)
    return shapes, hidden


async def cluster_id(settings: Settings) -> str:
    """The Kafka cluster id (what a directory snapshot says it was taken from)."""
    admin = make_admin(settings)
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
    partitions: Sequence[int] | None = None,
    isolation_level: str = "read_committed",
    until: Callable[[], bool] | None = None,
    timeout_s: float | None = 60.0,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield the records of ``topic`` (only ``partitions`` when given; else every partition
    the layout gives it) from their start to their end offsets as of the start. The one reader
    of a topic from its beginning: replicas, restores, tools and tests all read through it.

    With ``until``, keep reading past the end until ``until()`` is true or ``timeout_s``
    passes. ``timeout_s`` None: no deadline (a restore of a large partition); otherwise
    :class:`TimeoutError` when the end is not reached in time.
    """
    # a new client learns the topic's leaders on its first request: a short backoff keeps
    # that from costing 100 ms (aiokafka's default) per read on the restore path
    consumer = make_reader(
        settings,
        isolation_level=isolation_level,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        retry_backoff_ms=FIRST_REQUEST_BACKOFF_MS,
    )
    await start_all(consumer)
    try:
        if partitions is None:
            counts = {spec.name: spec.num_partitions for spec in topic_specs(settings)}
            # a topic not in the layout (an agency's decision topic) has one partition
            partitions = range(counts.get(topic, 1))
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=200, max_records=100_000)
            for records in batch.values():
                for record in records:
                    yield record
            late = deadline is not None and loop.time() > deadline
            if until is not None:
                if until() or late:
                    return
                continue
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                return
            if late:
                raise TimeoutError(f"reading {topic} to its end took over {timeout_s} s")
    finally:
        await consumer.stop()


async def latest_values(
    settings: Settings, topic: str, partitions: Sequence[int], *, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """The latest committed JSON value per key of ``partitions`` of a compacted ``topic`` (a
    tombstone removes its key), read with :func:`read_to_end`."""
    latest: dict[bytes, dict[str, Any]] = {}
    async for record in read_to_end(settings, topic, partitions=partitions, timeout_s=timeout_s):
        if record.key is None:
            continue
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = orjson.loads(record.value)
    return list(latest.values())
