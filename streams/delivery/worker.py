"""The delivery worker's I/O shell: send tasks in, provider calls, receipts out.

Data flow: ``loa.sends.<priority>`` -> [this] -> a :class:`~streams.delivery.channels.Channel`
-> ``loa.sends.receipts`` (and, when a task fails for good, a fallback task to the recipient's
next channel on the same send-task topic and partition).

How it runs:

- One consumer group per channel filter (``<app_id>-deliver-<channel>``; ``-all`` without a
  filter), subscribed to the three send-task topics read_committed. Tasks of other channels are
  passed over (their offsets still commit), so each channel's workers scale on their own.
- Fetched tasks wait in a :class:`~streams.delivery.policy.TaskBuffer`; each batch is taken from
  the most urgent priority, and partitions whose buffer is full are paused, so a routine backlog
  is never what an extreme task waits behind for more than one batch.
- A batch's provider calls run concurrently (at most ``concurrency`` at once) and **outside**
  any transaction; a 429's Retry-After closes the channel's gate for every call of this worker
  (shared back-off), other transient failures back off exponentially up to ``max_attempts``.
- Then one small transaction writes the batch's receipts (and fallback tasks) together with the
  consumed offsets. A task that failed for good (a permanent refusal, or a transient failure
  that outlived ``max_attempts``) and lists ``fallback`` channels is followed by a task for the
  first of them (:func:`~streams.delivery.policy.fallback_task`); its receipt names that channel.
- SIGTERM/SIGINT (:func:`deliver` with ``stop``) stops fetching, lets the batch in flight finish
  and commit, then closes: no send is abandoned half-way.

Guarantee: for read_committed readers every committed task gets exactly one receipt (receipts
and offsets commit together or not at all). A provider call is at least once: a crash between
the call and the commit repeats it with the same idempotency key, which the provider uses to
drop the repeat (the ``http`` channel sends it as ``Idempotency-Key``); within one run the
worker also drops a task whose key it has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.delivery.channels import Channel, LogChannel
from streams.delivery.policy import (
    DeliveryStats,
    Outcome,
    TaskBuffer,
    fallback_task,
    final,
    next_attempt,
    parse_task,
    receipt,
)
from streams.kafkaio.clients import make_producer, make_reader, start_all
from streams.records import CHANNELS, Priority
from streams.settings import Settings

__all__ = ["DeliveryMetrics", "deliver"]

log = logging.getLogger("streams.deliver")

_ALL_PRIORITIES = tuple(p.value for p in Priority)
_SEND_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DeliveryMetrics:
    """The delivery worker's metrics, on an injected registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = Counter(
            "loa_delivery_sends_total",
            "Tasks settled by this delivery worker, by channel and outcome (delivered, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "loa_delivery_failures_total",
            "Tasks that failed for good, by channel and reason (http_<status>, timeout...).",
            ["channel", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "loa_delivery_retries_total",
            "Provider calls repeated after a transient answer, by channel and reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "loa_delivery_fallbacks_total",
            "Tasks moved to the recipient's next channel after failing for good on this one.",
            ["channel"],
            registry=r,
        )
        self.latency = Histogram(
            "loa_delivery_send_seconds",
            "Duration of one provider call, by channel.",
            ["channel"],
            buckets=_SEND_SECONDS,
            registry=r,
        )
        self.in_flight = Gauge(
            "loa_delivery_in_flight", "Provider calls in flight.", ["channel"], registry=r
        )
        for channel in CHANNELS:
            for outcome in ("delivered", "failed"):
                self.sends.labels(channel, outcome)
            self.in_flight.labels(channel)


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


class _Gate:
    """When this worker may call the provider again (a 429's Retry-After closes it for all)."""

    def __init__(self) -> None:
        self.not_before = 0.0

    def close_for(self, seconds: float) -> None:
        self.not_before = max(self.not_before, time.monotonic() + seconds)

    async def wait(self) -> None:
        # the deadline may move later while we sleep (another 429): re-check after each nap
        while (delay := self.not_before - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


class _Sender:
    """Calls the provider for one task with retries; returns the final outcome."""

    def __init__(
        self,
        provider: Channel,
        metrics: DeliveryMetrics,
        *,
        concurrency: int,
        max_attempts: int,
    ) -> None:
        self.provider = provider
        self.metrics = metrics
        self.max_attempts = max_attempts
        self._slots = asyncio.Semaphore(concurrency)
        self._gate = _Gate()

    async def send(self, task: dict[str, Any], stats: DeliveryStats) -> Outcome:
        channel = str(task["channel"])
        attempt = 0
        while True:
            attempt += 1
            await self._gate.wait()
            async with self._slots:
                self.metrics.in_flight.labels(channel).inc()
                started = time.perf_counter()
                try:
                    outcome = await self.provider.send(task)
                except Exception as exc:  # a channel bug must not lose the task: a failure
                    log.exception(
                        "channel %s raised on %s", self.provider.name, task["idempotency_key"]
                    )
                    outcome = Outcome.failed(f"error_{type(exc).__name__}"[:64])
                finally:
                    self.metrics.in_flight.labels(channel).dec()
                    self.metrics.latency.labels(channel).observe(time.perf_counter() - started)
            wait = next_attempt(outcome, attempt, self.max_attempts)
            if wait is None:
                return final(outcome)
            stats.retries += 1
            self.metrics.retries.labels(channel, outcome.reason or "unknown").inc()
            if outcome.after_s is not None:  # the provider said when: every call waits
                self._gate.close_for(wait)
            else:
                await asyncio.sleep(wait)


async def deliver(
    settings: Settings,
    *,
    provider: Channel | None = None,
    channel: str | None = None,
    priorities: Sequence[str] = _ALL_PRIORITIES,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    fail_every: int = 0,
    dedup_keys: int = 1_000_000,
    group_id: str | None = None,
    worker_name: str | None = None,
    concurrency: int = 32,
    batch_size: int = 256,
    max_attempts: int = 5,
    metrics: DeliveryMetrics | None = None,
    stop: asyncio.Event | None = None,
) -> DeliveryStats:
    """Deliver send tasks until ``max_tasks`` receipts were written, ``idle_exit_s`` passed
    without a task, or ``stop`` is set (then the batch in flight finishes and commits).

    ``channel`` keeps only tasks of that channel (its own consumer group); ``provider`` is the
    :class:`Channel` to call (default: ``log``).
    """
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    own_provider = provider is None
    provider = provider if provider is not None else LogChannel(fail_every)
    metrics = metrics if metrics is not None else DeliveryMetrics()
    stop = stop if stop is not None else asyncio.Event()
    name = worker_name or f"deliver-{channel or 'all'}-{uuid.uuid4().hex[:8]}"
    group = group_id or f"{settings.app_id}-deliver-{channel or 'all'}"
    topic_priority = {settings.sends_topic(p): p for p in priorities}
    consumer = make_reader(
        settings,
        *topic_priority,
        group_id=group,
        max_partition_fetch_bytes=1024 * 1024,
        client_id=name,
    )
    producer = make_producer(settings, transactional_id=f"{group}-{name}", client_id=name)
    run = _Run(settings, consumer, producer, group, name, channel, topic_priority, metrics)
    sender = _Sender(provider, metrics, concurrency=concurrency, max_attempts=max_attempts)
    seen = _Seen(dedup_keys)
    try:
        await start_all(producer, consumer)
        try:
            await run.loop(sender, seen, stop, max_tasks, idle_exit_s, batch_size)
        finally:
            await consumer.stop()
            await producer.stop()
    finally:
        if own_provider:
            await provider.close()
    s = run.stats
    log.info(
        "deliver %s: %d delivered, %d failed, %d duplicates dropped, %d invalid, %d retries, "
        "%d fallbacks",
        name,
        s.delivered,
        s.failed,
        s.duplicates,
        s.invalid,
        s.retries,
        s.fallbacks,
    )
    return s


class _Run:
    """One run's state: the buffer, offsets to commit, stats."""

    #: Buffered tasks per priority above which its partitions are paused.
    BUFFER_HIGH = 5_000

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: Any,
        group: str,
        name: str,
        channel: str | None,
        topic_priority: dict[str, str],
        metrics: DeliveryMetrics,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.group = group
        self.name = name
        self.channel = channel
        self.topic_priority = topic_priority
        self.metrics = metrics
        self.stats = DeliveryStats()
        self.buffer = TaskBuffer()

    async def loop(
        self,
        sender: _Sender,
        seen: _Seen,
        stop: asyncio.Event,
        max_tasks: int | None,
        idle_exit_s: float | None,
        batch_size: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        last_task = loop.time()
        while not stop.is_set() and (max_tasks is None or self.stats.receipts < max_tasks):
            await self._fetch(0 if len(self.buffer) else 200)
            budget = (
                batch_size
                if max_tasks is None
                else min(batch_size, max_tasks - self.stats.receipts)
            )
            records = self.buffer.take(budget)
            if not self.consumer.assignment():  # still joining the group: not idle yet
                last_task = loop.time()
            if not records:
                if idle_exit_s is not None and loop.time() - last_task > idle_exit_s:
                    return
                continue
            await self._settle(records, sender, seen)
            last_task = loop.time()  # idle counts from the end of the last batch

    async def _fetch(self, timeout_ms: int) -> None:
        data = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=2_000)
        for tp, records in data.items():
            self.buffer.add(self.topic_priority[tp.topic], records)
        for priority in set(self.topic_priority.values()):
            tps = [
                tp for tp in self.consumer.assignment() if self.topic_priority[tp.topic] == priority
            ]
            if self.buffer.size(priority) > self.BUFFER_HIGH:
                self.consumer.pause(*tps)
            else:
                self.consumer.resume(*tps)

    async def _settle(
        self, records: list[ConsumerRecord[bytes, bytes]], sender: _Sender, seen: _Seen
    ) -> None:
        """Call the provider for a batch (outside any transaction), then commit its receipts,
        fallback tasks and offsets in one small transaction."""
        offsets: dict[TopicPartition, int] = {}
        work: list[tuple[ConsumerRecord[bytes, bytes], dict[str, Any]]] = []
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
            task = self._task(record)
            if task is None:
                continue
            if self.channel is not None and task["channel"] != self.channel:
                self.stats.skipped += 1
                continue
            if not seen.add(str(task["idempotency_key"])):
                self.stats.duplicates += 1
                continue
            work.append((record, task))
        async with asyncio.TaskGroup() as group:
            calls = [group.create_task(sender.send(task, self.stats)) for _, task in work]
        outcomes = [call.result() for call in calls]
        async with self.producer.transaction():
            for (record, task), outcome in zip(work, outcomes, strict=True):
                await self._record(record, task, outcome)
            await self.producer.send_offsets_to_transaction(offsets, self.group)

    def _task(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
        try:
            return parse_task(orjson.loads(record.value or b""))
        except (orjson.JSONDecodeError, ValueError) as exc:  # nobody to send a receipt for
            self.stats.invalid += 1
            log.warning(
                "unreadable send task dropped (%s:%d): %s", record.topic, record.offset, exc
            )
            return None

    async def _record(
        self, record: ConsumerRecord[bytes, bytes], task: dict[str, Any], outcome: Outcome
    ) -> None:
        channel = str(task["channel"])
        moved_to: str | None = None
        if outcome.status == "failed":
            nxt = fallback_task(task)
            if nxt is not None:  # the recipient's next channel gets the same lineage
                await self.producer.send(
                    record.topic, orjson.dumps(nxt), key=record.key, partition=record.partition
                )
                moved_to = str(nxt["channel"])
                self.stats.fallbacks += 1
                self.metrics.fallbacks.labels(channel).inc()
            self.stats.failed += 1
            self.metrics.failures.labels(channel, outcome.reason or "unknown").inc()
        else:
            self.stats.delivered += 1
        self.metrics.sends.labels(
            channel, "delivered" if outcome.status == "delivered" else "failed"
        ).inc()
        priority = str(task["priority"])
        self.stats.by_priority[priority] = self.stats.by_priority.get(priority, 0) + 1
        doc = receipt(task, outcome, worker=self.name, at=time.time(), fallback=moved_to)
        await self.producer.send(
            self.settings.receipts_topic,
            orjson.dumps(doc),
            key=record.key,
            partition=record.partition,
        )


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Any:
    """Set ``stop`` on SIGTERM or SIGINT (drain: the batch in flight finishes and commits)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
