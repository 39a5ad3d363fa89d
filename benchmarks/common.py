"""What the directory benchmark is compared with (aiokafka's batch API), and its results file."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from benchmarks.peers import aiokafka_batch_rate
from streams.kafkaio.clients import make_admin
from streams.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


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
