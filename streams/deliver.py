"""``loa deliver``: the reference delivery worker, downstream of Loa (demo, tests, a template).

Data flow: ``loa.sends.<priority>`` -> [deliver] -> the channel provider -> ``loa.sends.receipts``.
The only provider here is ``log``: "delivering" a task writes one log line (logger
``loa.deliver.log``). A real worker replaces :meth:`LogChannel.send` with a provider call.

It consumes the send-task topics read_committed in consumer group
``<app_id>-deliver-<channel>``, drops a task whose ``idempotency_key`` it has already seen (a
bounded memory of the most recent keys), and writes one receipt per task (key recipient id,
the task's partition) in a Kafka transaction together with the consumed offsets.

Guarantee: for read_committed readers, every committed task gets exactly one receipt, even
across a crash of this worker (the receipts and the offsets commit together, or neither);
a duplicate task (a re-published alert, a non-transactional producer) is dropped when its key
is still in memory (``--dedup-keys``). A provider call is at least once: a crash between the
call and the commit repeats it, which is what the idempotency key is for at the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.kafkaio.clients import make_producer, make_reader
from streams.records import Priority
from streams.settings import Settings

__all__ = ["DeliveryStats", "LogChannel", "deliver"]

log = logging.getLogger(__name__)
provider_log = logging.getLogger("loa.deliver.log")

_ALL_PRIORITIES = tuple(p.value for p in Priority)


@dataclass(slots=True)
class DeliveryStats:
    """What one run of the delivery worker did."""

    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    invalid: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)

    @property
    def receipts(self) -> int:
        return self.delivered + self.failed


class LogChannel:
    """The ``log`` provider: logs each task; every ``fail_every``-th task fails (for drills)."""

    name = "log"

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self._n = 0

    def send(self, task: dict[str, Any]) -> str | None:
        """Deliver ``task``; returns None when delivered, else a short failure code."""
        self._n += 1
        if self.fail_every and self._n % self.fail_every == 0:
            return "simulated"
        provider_log.info(
            "deliver %s to %s via %s (%s)",
            task["idempotency_key"],
            task["recipient_id"],
            task["channel"],
            task["language"],
        )
        return None


class _Seen:
    """The most recent ``capacity`` idempotency keys (insertion-ordered dict as a FIFO)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: dict[str, None] = {}

    def add(self, key: str) -> bool:
        """True when ``key`` is new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            del self._keys[next(iter(self._keys))]
        return True


async def deliver(
    settings: Settings,
    *,
    channel: str = "log",
    priorities: Sequence[str] = _ALL_PRIORITIES,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    fail_every: int = 0,
    dedup_keys: int = 1_000_000,
    group_id: str | None = None,
    worker_name: str | None = None,
) -> DeliveryStats:
    """Deliver send tasks until ``max_tasks`` receipts were written or ``idle_exit_s`` passed
    without a task (either None: run until cancelled)."""
    if channel != "log":
        raise ValueError(f"unknown channel {channel!r} (only 'log' is built in)")
    provider = LogChannel(fail_every)
    name = worker_name or f"deliver-{channel}-{uuid.uuid4().hex[:8]}"
    group = group_id or f"{settings.app_id}-deliver-{channel}"
    topics = [settings.sends_topic(p) for p in priorities]
    consumer = make_reader(
        settings,
        *topics,
        group_id=group,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        client_id=name,
    )
    producer = make_producer(settings, transactional_id=f"{group}-{name}", client_id=name)
    stats = DeliveryStats()
    seen = _Seen(dedup_keys)
    loop = asyncio.get_running_loop()
    await producer.start()
    try:
        await consumer.start()
        try:
            last_task = loop.time()
            while max_tasks is None or stats.receipts < max_tasks:
                budget = None if max_tasks is None else max_tasks - stats.receipts
                data = await consumer.getmany(timeout_ms=200, max_records=budget or 10_000)
                if not data:
                    if idle_exit_s is not None and loop.time() - last_task > idle_exit_s:
                        break
                    continue
                last_task = loop.time()
                offsets = {tp: records[-1].offset + 1 for tp, records in data.items()}
                async with producer.transaction():
                    for tp, records in data.items():
                        for record in records:
                            receipt = _handle(record.value, provider, seen, stats, name)
                            if receipt is not None:
                                await producer.send(
                                    settings.receipts_topic,
                                    receipt,
                                    key=record.key,
                                    partition=tp.partition,
                                )
                    await producer.send_offsets_to_transaction(offsets, group)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    log.info(
        "deliver %s: %d delivered, %d failed, %d duplicates dropped, %d invalid",
        name,
        stats.delivered,
        stats.failed,
        stats.duplicates,
        stats.invalid,
    )
    return stats


def _handle(
    raw: bytes | None, provider: LogChannel, seen: _Seen, stats: DeliveryStats, name: str
) -> bytes | None:
    """One task: the receipt to write, or None (duplicate, unreadable)."""
    try:
        task = orjson.loads(raw or b"")
        key = task["idempotency_key"]
        for name_ in ("alert_id", "version", "kind", "priority", "recipient_id", "channel"):
            task[name_]  # a task the receipt cannot name is unreadable
        task.setdefault("language", "")
    except Exception as exc:  # unreadable task: nobody to send a receipt for
        stats.invalid += 1
        log.warning("unreadable send task dropped: %s", exc)
        return None
    if not seen.add(key):
        stats.duplicates += 1
        return None
    reason = provider.send(task)
    if reason is None:
        stats.delivered += 1
    else:
        stats.failed += 1
    priority = str(task.get("priority"))
    stats.by_priority[priority] = stats.by_priority.get(priority, 0) + 1
    return orjson.dumps(
        {
            "alert_id": task["alert_id"],
            "version": task["version"],
            "kind": task["kind"],
            "priority": task["priority"],
            "recipient_id": task["recipient_id"],
            "channel": task["channel"],
            "idempotency_key": key,
            "outcome": "delivered" if reason is None else "failed",
            "reason": reason,
            "at": time.time(),
            "worker": name,
        }
    )
