"""What the benchmarks share: the broker they run on, the producer ceiling they are compared with,
and the results file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from benchmarks.peers import aiokafka_batch_rate
from streams.demo.localrun import start_broker, stop_broker
from streams.kafkaio.clients import make_admin
from streams.settings.model import Settings

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def bench_broker(partitions: int, port: int, workdir: Path) -> Iterator[Settings]:
    """The broker a benchmark runs on: ``LOA_BOOTSTRAP_SERVERS`` if set, else the dev broker on
    ``port`` with its data under ``workdir``, stopped after."""
    bootstrap = os.environ.get("LOA_BOOTSTRAP_SERVERS")
    base = Settings(bootstrap_servers=bootstrap or f"127.0.0.1:{port}", partitions=partitions)
    os.environ.setdefault("LOA_KAFKA_PORT", str(port))
    os.environ.setdefault("LOA_KAFKA_DIR", str(workdir / "kafka"))
    started = False if bootstrap else start_broker(base)
    try:
        yield base
    finally:
        if started:
            stop_broker(base)


def tagged(base: Settings, prefix: str, **fields: Any) -> Settings:
    """``base`` with topics and a consumer group of a run of its own."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return replace(base, topic_prefix=tag, app_id=tag, **fields)


async def ceiling(settings: Settings, n: int, key_size: int, value_size: int) -> float:
    """Records/s of aiokafka's public batch API with pre-serialized records of the same size
    (:func:`benchmarks.peers.aiokafka_batch_rate`) on a fresh topic."""
    topic = f"{settings.topic_prefix}.ceiling"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    finally:
        await admin.close()
    return await aiokafka_batch_rate(settings, topic, n, key_size, value_size)


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
