"""What both benchmarks share: the producer ceiling they are compared with, and the results file."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from streams.kafkaio.clients import make_admin, make_producer
from streams.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


async def ceiling(settings: Settings, n: int, key_size: int, value_size: int) -> float:
    """Records/s of aiokafka's batch producer with pre-serialized records of the same size,
    one ``append`` per record, batches round-robin over the partitions: the best aiokafka's
    public batch API does on this broker."""
    topic = f"{settings.topic_prefix}.ceiling"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    finally:
        await admin.close()
    keys = [b"%0*d" % (key_size, i) for i in range(n)]
    value = b"x" * value_size
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up", key=b"0", partition=0)
        for p in range(settings.partitions):
            await producer.send_and_wait(topic, b"warm-up", key=b"0", partition=p)
        ts = int(time.time() * 1000)
        gc.disable()
        started = time.perf_counter()
        pending = []
        partition = 0
        batch = producer.create_batch()
        for key in keys:
            if batch.append(timestamp=ts, key=key, value=value) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                partition = (partition + 1) % settings.partitions
                batch = producer.create_batch()
                batch.append(timestamp=ts, key=key, value=value)
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
        return n / (time.perf_counter() - started)
    finally:
        gc.enable()
        await producer.stop()


def write_results(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``benchmarks/results/<name>.json`` with when and where it ran."""
    report = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **payload,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
