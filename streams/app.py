"""Faust app and agent wiring only: read, call the core, write, count.

Agents (each ``concurrency=1``: Faust may commit past a record still in flight otherwise):

* ``ingest`` on ``loa.alerts.inbound``: :func:`streams.ingest.decide`, then the decision is
  written (rejection, or accepted alert plus one order per directory partition) before the
  next record is read. It catches everything: Faust acks a record when an agent raises, so an
  uncaught exception would silently drop it.
* ``fanout`` on ``loa.fanout.orders``: waits for its directory partition to catch up, then
  :func:`streams.fanout.emitter.emit_order`. Retriable failures are retried in place.

Loa owns its producer (``acks=all``, idempotent) instead of Faust's, and the directory owns
its consumer (replay from offset 0 on assignment).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer

from streams.directory.service import DirectoryService
from streams.errors import LoaError, RejectionCode
from streams.fanout.emitter import emit_order
from streams.ingest import Accepted, Rejected, decide, rejection_record
from streams.kafka import create_topics, make_producer
from streams.records import FanoutOrder, Progress
from streams.regions import RegionRegistry, registry
from streams.settings import Settings

__all__ = ["Runtime", "create_app"]

log = logging.getLogger("loa")

_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class Runtime:
    """What the agents share: Loa's producer and the directory."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self.settings = settings
        self.regions = regions
        self.directory = DirectoryService(settings, regions)
        self._producer: AIOKafkaProducer | None = None
        self._started = asyncio.Event()
        self._wanted: set[int] | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "runtime not started"
        return self._producer

    async def start(self) -> None:
        await create_topics(self.settings)
        self._producer = make_producer(self.settings)
        await self._producer.start()
        await self.directory.start()
        if self._wanted is not None:
            await self.directory.assign(self._wanted)
        self._started.set()

    async def stop(self) -> None:
        await self.directory.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def assign(self, partitions: set[int]) -> None:
        self._wanted = partitions
        if self._started.is_set():
            await self.directory.assign(partitions)

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None
    ) -> None:
        """Write one record and wait until the broker has it (retrying transient errors)."""
        for attempt in range(len(_RETRY_BACKOFF_S) + 1):
            try:
                await self.producer.send_and_wait(topic, value, key=key, partition=partition)
                return
            except Exception as exc:
                if attempt == len(_RETRY_BACKOFF_S) or not _retriable(exc):
                    raise
                log.warning("write to %s failed (%s); retrying", topic, exc)
                await asyncio.sleep(_RETRY_BACKOFF_S[attempt])

    async def report(self, progress: Progress) -> None:
        await self.producer.send(
            self.settings.progress_topic,
            progress.to_json(),
            key=progress.key,
            partition=progress.partition,
        )


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, LoaError):
        return exc.retriable
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, (TimeoutError, OSError))


def create_app(settings: Settings) -> faust.App:
    regions = registry()
    runtime = Runtime(settings, regions)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=settings.resolved_data_dir,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1,
        stream_wait_empty=False,
    )
    app.loa_runtime = runtime  # type: ignore[attr-defined]

    class RuntimeService(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()

    app.service(RuntimeService)

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned")
        partitions = {tp.partition for tp in assigned or () if tp.topic == settings.orders_topic}
        asyncio.get_running_loop().create_task(runtime.assign(partitions))

    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]  # mode stubs

    inbound = app.topic(settings.inbound_topic, key_type=bytes, value_type=bytes)
    orders = app.topic(settings.orders_topic, key_type=bytes, value_type=bytes)

    @app.agent(inbound, concurrency=1)
    async def ingest(stream: Any) -> None:
        await runtime.wait_started()
        async for event in stream.events():
            message = event.message
            decision = decide(
                message.value,
                regions=regions,
                partitions=settings.partitions,
                max_bytes=settings.max_alert_bytes,
            )
            await _write_decision(runtime, decision, message.value, message)

    @app.agent(orders, concurrency=1)
    async def fanout(stream: Any) -> None:
        await runtime.wait_started()
        async for event in stream.events():
            message = event.message
            try:
                order = FanoutOrder.from_json(message.value)
            except Exception as exc:
                rejected = Rejected(
                    RejectionCode.MALFORMED, f"bad fan-out order: {exc}", "", None, None
                )
                await _write_decision(runtime, rejected, message.value, message)
                continue
            await _fan_out(runtime, order, message)

    return app


async def _write_decision(
    runtime: Runtime, decision: Accepted | Rejected, raw: bytes | None, message: Any
) -> None:
    settings = runtime.settings
    if isinstance(decision, Rejected):
        value = rejection_record(
            decision, raw, topic=message.topic, partition=message.partition, offset=message.offset
        )
        await runtime.send(settings.rejected_topic, value)
        log.info(
            "decision=rejected code=%s sender=%s identifier=%s pointer=%s message=%s",
            decision.code.value,
            decision.sender,
            decision.identifier,
            decision.pointer,
            decision.message,
        )
        return
    alert = decision.alert
    await runtime.send(settings.accepted_topic, alert.to_json(), key=alert.alert_id.encode())
    for order in decision.orders:
        await runtime.send(
            settings.orders_topic,
            order.to_json(),
            key=alert.alert_id.encode(),
            partition=order.partition,
        )
    log.info(
        "decision=accepted alert=%s priority=%s status=%s targets=%d orders=%d",
        alert.alert_id,
        alert.priority.value,
        alert.status,
        len(alert.targets),
        len(decision.orders),
    )


async def _fan_out(runtime: Runtime, order: FanoutOrder, message: Any) -> None:
    """Run one order to completion, retrying transient failures (never dropping the order)."""
    settings = runtime.settings
    attempt = 0
    while True:
        try:
            directory = await runtime.directory.ready(order.partition)
            await emit_order(
                order,
                directory,
                runtime.regions,
                runtime.producer,
                topic=settings.sends_topic(order.priority.value),
                chunk=settings.fanout_chunk,
                report=runtime.report,
            )
            return
        except Exception as exc:
            if not _retriable(exc):
                # A bug met this order: keep it on the rejections topic rather than crash the
                # agent (which would ack and drop it) or retry it forever.
                log.exception("fanout %s partition %d failed", order.alert_id, order.partition)
                await _write_decision(
                    runtime,
                    Rejected(
                        RejectionCode.INTERNAL,
                        f"fan-out failed: {exc!r}",
                        "",
                        order.alert_id.split("/")[0],
                        order.alert_id,
                    ),
                    order.to_json(),
                    message,
                )
                return
            delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
            attempt += 1
            log.warning(
                "fanout %s partition %d: %s; retry in %.1f s",
                order.alert_id,
                order.partition,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
