"""Peers measured in the same run, on the same broker, with records of the same size as Loa's
send tasks: what other producers do with this broker, so Loa's figure is a ratio, not a claim.

- ``java``: Kafka's own ``ProducerPerformance`` (``org.apache.kafka:kafka-tools``, resolved with
  Maven by ``benchmarks/kafka-tools.sh``), ``acks=all``, idempotent, 1 MB batches.
- ``confluent``: a confluent-kafka (librdkafka) ``produce`` loop, ``acks=all``, idempotent.
- ``aiokafka``: aiokafka's public batch API (``create_batch`` / ``append`` / ``send_batch``).
- ``faust``: a naive Faust agent doing one ``await topic.send()`` per recipient (bounded count).

Each peer writes its own ``LogAppendTime`` topic; its rate is then counted by the broker's clock
(:func:`benchmarks.brokerclock.count_tasks`), the same way as Loa's, next to the peer's own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.brokerclock import client_config, count_tasks, create_log_append_topics
from streams.kafkaio.clients import appended_batches, make_producer
from streams.settings.model import Settings

__all__ = ["PEERS", "run_peer"]

HERE = Path(__file__).resolve().parent


def _keys(n: int, key_size: int) -> list[bytes]:
    return [b"%0*d" % (key_size, i) for i in range(n)]


def java_peer(settings: Settings, topic: str, n: int, key_size: int, value_size: int) -> float:
    classpath = subprocess.run(
        ["bash", str(HERE / "kafka-tools.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    connection = client_config(settings)
    untranslated = set(connection) - {"bootstrap.servers", "security.protocol", "client.id"}
    if untranslated:
        # the Java client names SASL and TLS options differently (JAAS, trust stores)
        raise ValueError(
            f"the Java peer cannot take {sorted(untranslated)}: leave it out with --peers"
        )
    props = {
        **connection,
        "acks": "all",
        "enable.idempotence": "true",
        "batch.size": "1000000",
        "linger.ms": "5",
        "max.request.size": "2000000",
    }
    java = os.environ.get("LOA_KAFKA_JAVA") or "java"
    out = subprocess.run(
        [
            java,
            "-Xmx512m",
            "-cp",
            classpath,
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(n),
            # ProducerPerformance sends no key: its value carries the key's bytes too
            "--record-size",
            str(key_size + value_size),
            "--throughput",
            "-1",
            "--producer-props",
            *(f"{k}={v}" for k, v in props.items()),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    summary = [line for line in out.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", summary)
    if match is None:
        raise RuntimeError(f"ProducerPerformance printed no rate: {summary!r}")
    return float(match.group(1))


def confluent_peer(settings: Settings, topic: str, n: int, key_size: int, value_size: int) -> float:
    producer = Producer(
        {
            **client_config(settings),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    keys = _keys(n, key_size)
    value = b"x" * value_size
    started = time.perf_counter()
    for key in keys:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(300) != 0:
        raise RuntimeError("confluent-kafka peer: records left unsent after 300 s")
    return n / (time.perf_counter() - started)


async def aiokafka_batch_rate(
    settings: Settings, topic: str, n: int, key_size: int, value_size: int
) -> float:
    """Records/s of aiokafka's public batch API: one ``append`` per pre-serialized record,
    batches round-robin over the partitions (also the directory benchmark's ceiling)."""
    value = b"x" * value_size
    records = [(key, value) for key in _keys(n, key_size)]
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata before the clock starts
        gc.disable()
        started = time.perf_counter()
        pending = []
        for i, batch in enumerate(appended_batches(producer, records)):
            partition = i % settings.partitions
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
        return n / (time.perf_counter() - started)
    finally:
        gc.enable()
        await producer.stop()


def aiokafka_peer(settings: Settings, topic: str, n: int, key_size: int, value_size: int) -> float:
    return asyncio.run(aiokafka_batch_rate(settings, topic, n, key_size, value_size))


def faust_peer(settings: Settings, topic: str, n: int, key_size: int, value_size: int) -> float:
    """A Faust worker (``benchmarks.naive_faust``) told to send ``n`` records; its own rate is
    what it printed (first to last ``send`` returned)."""
    trigger = f"{topic}.trigger"
    create_log_append_topics(settings, {trigger: 1})
    producer = Producer(client_config(settings))
    producer.produce(trigger, b"%d %d %d" % (n, key_size, value_size))
    producer.flush(30)
    env = {
        **os.environ,
        "BENCH_FAUST_BROKER": settings.bootstrap_servers,
        "BENCH_FAUST_TRIGGER": trigger,
        "BENCH_FAUST_TOPIC": topic,
        "BENCH_FAUST_ID": f"{topic}-faust",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.naive_faust"],
        env=env,
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    match = re.search(r"naive-faust: sent (\d+) in ([\d.]+) s", proc.stdout + proc.stderr)
    if match is None:
        raise RuntimeError(f"naive Faust peer failed: {(proc.stdout + proc.stderr)[-2000:]}")
    return int(match.group(1)) / float(match.group(2))


Peer = Callable[[Settings, str, int, int, int], float]
PEERS: dict[str, Peer] = {
    "java": java_peer,
    "confluent": confluent_peer,
    "aiokafka": aiokafka_peer,
    "faust": faust_peer,
}


def run_peer(
    name: str, settings: Settings, n: int, key_size: int, value_size: int
) -> dict[str, Any]:
    """Run one peer on a fresh LogAppendTime topic and count what the broker holds."""
    topic = f"{settings.topic_prefix}.peer.{name}"
    create_log_append_topics(settings, {topic: settings.partitions})
    own = PEERS[name](settings, topic, n, key_size, value_size)
    count = count_tasks(settings, [topic], by_alert=False)[""]
    return {
        "peer": name,
        "records": n,
        "own_per_s": own,
        "broker": count.as_json(),
        "per_s": count.per_s,
        "exact": count.tasks == n,
    }
