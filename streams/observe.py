"""Reading Loa's outputs back: decisions and fan-out progress (for the CLI, demo, tests, bench)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafkaio.clients import make_reader, topic_specs
from streams.records import Progress
from streams.settings import Settings

__all__ = ["Decided", "wait_decision", "watch_progress"]

Decided = tuple[str, dict[str, Any]]


async def _consumer(
    settings: Settings, *topics: str
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = make_reader(settings)
    await consumer.start()
    counts = {spec.name: spec.num_partitions for spec in topic_specs(settings)}
    tps = [TopicPartition(topic, p) for topic in topics for p in range(counts[topic])]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def wait_decision(
    settings: Settings,
    sender: str,
    identifier: str,
    *,
    offset: int | None = None,
    timeout_s: float = 60.0,
) -> Decided:
    """The decision on a message: ``("accepted" | "duplicate" | "rejected", record)``.

    With ``offset`` (of the inbound record; the inbound topic has one partition), the decision
    on exactly that record, so a re-publish finds its ``duplicate``, not the first acceptance.
    """
    consumer, _ = await _consumer(settings, settings.accepted_topic, settings.rejected_topic)
    message_id = f"{sender}/{identifier}"
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                data = await consumer.getmany(timeout_ms=200)
                for tp, records in data.items():
                    for record in records:
                        try:
                            doc = orjson.loads(record.value or b"")
                        except orjson.JSONDecodeError:
                            continue  # not Loa's (the worker ignores it too)
                        if not isinstance(doc, dict):
                            continue
                        if tp.topic == settings.accepted_topic:
                            if doc.get("message_id") == message_id and offset in (
                                None,
                                doc.get("inbound_offset"),
                            ):
                                return "accepted", doc
                        elif _is_for(doc, sender, identifier, offset):
                            return "duplicate" if doc["code"] == "duplicate" else "rejected", doc
    finally:
        await consumer.stop()


def _is_for(rejection: dict[str, Any], sender: str, identifier: str, offset: int | None) -> bool:
    if offset is not None:
        source = rejection.get("source") or {}
        return bool(source.get("offset") == offset and source.get("topic", "").endswith(".inbound"))
    return rejection.get("sender") == sender and rejection.get("identifier") == identifier


async def watch_progress(
    settings: Settings,
    alert_id: str,
    *,
    version: int = 1,
    on_update: Callable[[dict[int, Progress]], None] | None = None,
    timeout_s: float = 600.0,
) -> dict[int, Progress]:
    """Follow ``loa.fanout.progress`` until every partition of the alert reports ``done``."""
    consumer, _ = await _consumer(settings, settings.progress_topic)
    latest: dict[int, Progress] = {}
    prefix = f"{alert_id}:{version}:".encode()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                data = await consumer.getmany(timeout_ms=200)
                changed = False
                for records in data.values():
                    for record in records:
                        if record.value is None or not (record.key or b"").startswith(prefix):
                            continue
                        try:
                            progress = Progress.from_json(record.value)
                        except Exception:
                            continue  # not a progress record (the worker skips it too)
                        latest[progress.partition] = progress
                        changed = True
                if changed and on_update is not None:
                    on_update(latest)
                if len(latest) == settings.partitions and all(p.done for p in latest.values()):
                    return latest
    finally:
        await consumer.stop()
