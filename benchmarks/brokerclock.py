"""The benchmarks' outside view: topics stamped by the broker, counted by a consumer Loa is not.

Everything here uses confluent-kafka (librdkafka), which shares no code with Loa's fan-out
(aiokafka, Faust). Bench topics are created with ``message.timestamp.type=LogAppendTime``, so
every record carries the time the broker appended it; after a run, :func:`count_tasks` reads
them with ``isolation.level=read_committed`` and reports per alert: tasks, distinct
recipients, duplicates, first and last append time. Rates are ``tasks / (last - first)`` on
the broker's clock, i.e. taken after the work they name was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import OperatorError
from streams.kafkaio.clients import client_options
from streams.settings.model import Settings

__all__ = [
    "BrokerCount",
    "client_config",
    "count_tasks",
    "create_log_append_topics",
    "delete_topics",
]

LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}


#: aiokafka option (as :func:`streams.kafkaio.clients.client_options` gives it) -> librdkafka's
_LIBRDKAFKA = {
    "bootstrap_servers": "bootstrap.servers",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "client_id": "client.id",
}
#: Settings fields with TLS files, where the settings carry them
_TLS_FILES = {
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka options with the connection and security options Loa's own clients get
    (:func:`~streams.kafkaio.clients.client_options`). An option with no librdkafka
    equivalent stops the bench (it would otherwise connect less securely than Loa)."""
    config: dict[str, Any] = {}
    for name, value in client_options(settings).items():
        if name == "ssl_context":
            continue  # built from the TLS files below
        if name not in _LIBRDKAFKA:
            raise ValueError(f"the bench cannot pass Kafka client option {name!r} to librdkafka")
        config[_LIBRDKAFKA[name]] = value
    for name, option in _TLS_FILES.items():
        value = getattr(settings, name, None)
        if value:
            config[option] = value
    if "ssl_context" in client_options(settings) and "ssl.ca.location" not in config:
        raise ValueError("the bench needs the TLS CA as a file to pass it to librdkafka")
    return config


def create_log_append_topics(
    settings: Settings,
    partitions: dict[str, int],
    extra: dict[str, str] | None = None,
) -> None:
    """Create ``partitions`` (name -> count) with broker append times; an existing topic
    is an error (a bench topic stamped by the producer would make the figures wrong)."""
    admin = AdminClient(client_config(settings))
    configs = {**LOG_APPEND, **(extra or {})}
    futures = admin.create_topics(
        [
            # 0 (Loa's "choose for the cluster size") is -1 here: the broker's default
            NewTopic(name, count, settings.replication_factor or -1, config=configs)
            for name, count in partitions.items()
        ]
    )
    for future in futures.values():
        future.result(timeout=60)


def delete_topics(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic and consumer group whose name starts with ``prefix``; returns the
    topic names."""
    admin = AdminClient(client_config(settings))
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            with contextlib.suppress(KafkaException):  # already gone
                future.result(timeout=60)
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=60)
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            with contextlib.suppress(KafkaException):
                future.result(timeout=60)
    return sorted(names)


Marks = dict[tuple[str, int], int]


def watermarks(settings: Settings, topics: Iterable[str]) -> Marks:
    """High watermark of every partition of ``topics`` (records plus transaction markers)."""
    consumer = Consumer({**client_config(settings), "group.id": "loa-bench-offsets"})
    try:
        marks: Marks = {}
        metadata = consumer.list_topics(timeout=30)
        for topic in topics:
            for p in metadata.topics[topic].partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                marks[(topic, p)] = high
        return marks
    finally:
        consumer.close()


def end_offsets(settings: Settings, topics: Iterable[str]) -> int:
    """Sum of the high watermarks of ``topics``."""
    return sum(watermarks(settings, topics).values())


@dataclass(slots=True)
class BrokerCount:
    """What the broker holds for one alert (or one peer's topic), committed records only."""

    tasks: int = 0
    distinct: int = 0
    duplicates: int = 0
    #: first and last LogAppendTime, ms since the epoch
    first_ms: int = 0
    last_ms: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    #: average key and value size, bytes
    key_bytes: float = 0.0
    value_bytes: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.last_ms - self.first_ms, 1) / 1000

    @property
    def per_s(self) -> float:
        """Tasks per second by the broker's clock, first to last append."""
        return self.tasks / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds, "per_s": self.per_s}


def _group_of(value: bytes | None, by_alert: bool) -> str:
    if not by_alert or not value or not value.startswith(b'{"alert_id":"'):
        return ""
    end = value.index(b'"', 13)
    return value[13:end].decode()


class CountStalled(OperatorError):
    """The independent count read no committed record for its timeout."""

    hint = "is the broker overloaded or gone? the bench topics are deleted; run it again"


def _recipient(key: bytes) -> int:
    """The recipient id of a task key (decimal, as Loa and the peers write it); any other key
    by a 64-bit hash (as 8 bytes per key instead of a bytes object: 100M keys fit in 800 MB)."""
    try:
        return int(key)
    except ValueError:
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def count_tasks(
    settings: Settings,
    topics: Iterable[str],
    *,
    by_alert: bool = True,
    since: Marks | None = None,
    timeout_s: float = 120.0,
) -> dict[str, BrokerCount]:
    """Read ``topics`` from their start (or the offsets ``since``) to their current end,
    committed records only, and count them per alert id (``by_alert``; else all under
    ``""``). The record key is the recipient. Raises :class:`CountStalled` when no record
    arrives for ``timeout_s`` (a stall; 100M tasks take minutes to count)."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"loa-bench-verify-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
    )
    keys: dict[str, array[int]] = {}
    counts: dict[str, BrokerCount] = {}
    try:
        metadata = consumer.list_topics(timeout=30)
        tps: list[TopicPartition] = []
        remaining: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in metadata.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                low = max(low, (since or {}).get((topic, p), 0))
                if high > low:
                    tps.append(TopicPartition(topic, p, low))
                    remaining[(topic, p)] = high
        consumer.assign(tps)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                left = sum(remaining.values())
                raise CountStalled(
                    f"counting the tasks stalled: no committed record for {timeout_s:g} s,"
                    f" {len(remaining)} partitions not read to their end (offsets up to {left:,})"
                )
            batch = consumer.consume(num_messages=100_000, timeout=1.0)
            if batch:
                deadline = time.monotonic() + timeout_s
            for msg in batch:
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        continue
                    raise KafkaException(msg.error())
                value = msg.value()
                group = _group_of(value, by_alert)
                count = counts.get(group)
                if count is None:
                    count = counts[group] = BrokerCount(first_ms=2**62)
                    keys[group] = array("Q")
                count.tasks += 1
                _, ts = msg.timestamp()
                count.first_ms = min(count.first_ms, ts)
                count.last_ms = max(count.last_ms, ts)
                part = msg.partition()
                count.per_partition[part] = count.per_partition.get(part, 0) + 1
                key = msg.key() or b""
                keys[group].append(_recipient(key))
                count.key_bytes += len(key)
                count.value_bytes += len(value or b"")
                topic_partition = (msg.topic(), part)
                if msg.offset() + 1 >= remaining.get(topic_partition, 2**62):
                    del remaining[topic_partition]
            # a partition whose tail is transaction markers or aborted records ends early
            for topic, p in list(remaining):
                position = consumer.position([TopicPartition(topic, p)])[0].offset
                if position >= remaining[(topic, p)]:
                    del remaining[(topic, p)]
    finally:
        consumer.close()
    for group, count in counts.items():
        unique = len(np.unique(np.frombuffer(keys[group], dtype=np.uint64)))
        count.distinct = unique
        count.duplicates = count.tasks - unique
        count.key_bytes /= count.tasks
        count.value_bytes /= count.tasks
    return counts
