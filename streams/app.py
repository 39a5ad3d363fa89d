"""Faust app and agent wiring only: read, call the core, write, count.

Agents (each ``concurrency=1``: Faust may commit past a record still in flight otherwise):

* ``ingest`` on ``loa.alerts.inbound`` (one partition: alerts are few, and their lifecycle
  needs a total order): :func:`streams.ingest.decide` against the lifecycle state (a replica of
  the compacted ``loa.alerts.accepted``), then the decision (rejection or duplicate, or the
  accepted message plus one order per directory partition) is written in one Kafka transaction
  together with the inbound offset, so each inbound record gets exactly one decision even
  across crashes. It catches everything: Faust acks a record when an agent raises, so an
  uncaught exception would silently drop it.
* ``fanout`` on ``loa.fanout.orders``: hands each order to the
  :class:`~streams.fanout.scheduler.FanoutScheduler`, which owns the orders of the partitions
  this worker holds (restored from Kafka on assignment) and emits them chunk by chunk in
  transactions, most urgent first.

Loa owns its producer (``acks=all``, idempotent) instead of Faust's, and the directory owns
its consumer (replay from offset 0 on assignment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import faust
import mode
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from streams.directory.service import DirectoryService
from streams.errors import LoaError, RejectionCode
from streams.fanout.scheduler import FanoutScheduler
from streams.ingest import Accepted, Duplicate, Rejected, decide, rejection_record
from streams.ingest.agencies import AgencyRegistry
from streams.ingest.agency_service import AgencyRegistryService
from streams.ingest.lifecycle import LifecycleState, Plan
from streams.kafka import create_topics, make_producer
from streams.metrics import LagSampler, Metrics, serve, shutdown
from streams.receipts import ReceiptsAgent
from streams.records import AcceptedAlert, FanoutOrder, TaskKind
from streams.regions import RegionRegistry, registry
from streams.replica import CompactedReplica
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
        # observability (streams.metrics, streams.receipts): a registry per runtime
        self.metrics = Metrics()
        self.receipts = ReceiptsAgent(settings, self.metrics)
        self.lag = LagSampler(
            settings,
            self.metrics,
            {
                settings.inbound_topic: settings.app_id,
                settings.orders_topic: settings.app_id,
                settings.receipts_topic: self.receipts.group_id,
            },
            self.directory.stats,
        )
        self._metrics_server: Any = None
        self._producer: AIOKafkaProducer | None = None
        # ingest: lifecycle state fed by a replica of the accepted topic; decisions are written
        # by a transactional producer (one transactional id: the inbound topic has one partition)
        self.lifecycle = LifecycleState()
        self.agencies = AgencyRegistryService(settings)
        self.accepted = CompactedReplica(
            settings,
            settings.accepted_topic,
            partitions=1,
            decode=self._on_accepted,
            name="accepted",
        )
        self._ingest_producer: AIOKafkaProducer | None = None
        # fan-out: channel limits (live, from a compacted topic) and the scheduler
        self.channels: CompactedReplica[float] = CompactedReplica(
            settings,
            settings.channels_topic,
            partitions=1,
            decode=_decode_limit,
            name="channels",
        )
        self.scheduler = FanoutScheduler(
            settings,
            regions,
            self.directory,
            self.metrics,
            stop_reason=self.stop_reason,
            limits=lambda: {k.decode(): v for k, v in self.channels.items().items()},
        )
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
        await self.accepted.start()
        await self.agencies.start()
        await self.channels.start()
        await self.scheduler.start()
        # the ingest producer is made when this worker first decides (``_ingest``): every
        # worker making it here would fence the one that holds the inbound partition
        if self._wanted is not None:
            await self.directory.assign(self._wanted)
            await self.scheduler.assign(self._wanted)
        s = self.settings
        self._metrics_server = serve(self.metrics, s.metrics_host, s.metrics_port)
        await self.receipts.start()
        await self.lag.start()
        self._started.set()

    async def stop(self) -> None:
        await self.lag.stop()
        await self.receipts.stop()
        shutdown(self._metrics_server)
        await self.scheduler.stop()
        await self.directory.stop()
        await self.accepted.stop()
        await self.agencies.stop()
        await self.channels.stop()
        for producer in (self._producer, self._ingest_producer):
            if producer is not None:
                await producer.stop()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def assign(self, partitions: set[int]) -> None:
        self._wanted = partitions
        if self._started.is_set():
            await self.directory.assign(partitions)
            await self.scheduler.assign(partitions)

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

    def _on_accepted(self, key: bytes, value: bytes) -> Plan:
        return self.lifecycle.apply(AcceptedAlert.from_json(value))

    async def commit_decision(
        self, outputs: list[tuple[str, bytes, bytes | None, int | None]], message: Any
    ) -> None:
        """Write a decision's records and the inbound offset after it in one transaction.

        Retries until it succeeds: the record must not be acked (Faust would commit past it)
        before its decision is on Kafka. A worker stuck here shows as inbound lag.
        """
        offsets = {TopicPartition(message.topic, message.partition): message.offset + 1}
        attempt = 0
        while True:
            attempt += 1
            producer = await self._ingest()
            try:
                async with producer.transaction():
                    for topic, value, key, partition in outputs:
                        await producer.send(topic, value, key=key, partition=partition)
                    await producer.send_offsets_to_transaction(offsets, self.settings.app_id)
                return
            except Exception as exc:
                fenced = isinstance(exc, ProducerFenced) or producer._txn_manager.is_fatal_error()
                if fenced:
                    # The inbound partition was another worker's before this one's, and its
                    # producer (same transactional id) fenced ours: nothing was committed, so
                    # take the id back with a new producer and decide again.
                    self._ingest_producer = None
                    with contextlib.suppress(Exception):
                        await producer.stop()
                delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S)) - 1]
                log_at = log.warning if fenced or _retriable(exc) else log.error
                log_at("decision transaction failed (%r); retry %d in %.1f s", exc, attempt, delay)
                await asyncio.sleep(delay)

    async def _ingest(self) -> AIOKafkaProducer:
        """The ingest producer (transactional id ``<app>-ingest-0``); starting it fences any
        other worker's, as the new owner of the inbound partition must."""
        if self._ingest_producer is None:
            producer = make_producer(
                self.settings, transactional_id=f"{self.settings.app_id}-ingest-0"
            )
            await producer.start()
            self._ingest_producer = producer
        return self._ingest_producer

    def stop_reason(self, order: FanoutOrder) -> str | None:
        """Why an order must stop now: its lineage was cancelled or its alert expired."""
        if order.kind is TaskKind.CANCEL:
            return None  # the Cancel's own tasks tell people to stand down: they always go
        if self.lifecycle.is_cancelled(order.alert_id):
            return "cancelled"
        if order.expires is not None and datetime.fromisoformat(order.expires) <= datetime.now(UTC):
            return "expired"
        return None


def _decode_limit(key: bytes, value: bytes) -> float:
    """A channel limit record: ``{"rate": tasks per second}`` for the whole cluster."""
    rate = orjson.loads(value)["rate"]
    if not isinstance(rate, int | float) or rate < 0:
        raise ValueError(f"rate must be a number >= 0, got {rate!r}")
    return float(rate)


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
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    )

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
            # every decision already on Kafka is in the lifecycle state before this one is made
            agencies = await _ingest_ready(runtime)
            decision = decide(
                message.value,
                regions=regions,
                partitions=settings.partitions,
                max_bytes=settings.max_alert_bytes,
                state=runtime.lifecycle,
                agencies=agencies,
                headers=message.headers,
                require_signatures=settings.require_signatures,
                h3_resolution=settings.h3_resolution,
                cancel_tasks=settings.cancel_tasks,
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
            if order.partition != message.partition:
                # submitting it would make this worker claim (and fence) another partition
                rejected = Rejected(
                    RejectionCode.MALFORMED,
                    f"fan-out order for partition {order.partition} on partition "
                    f"{message.partition}",
                    "/partition",
                    None,
                    None,
                )
                await _write_decision(runtime, rejected, message.value, message)
                continue
            await runtime.scheduler.submit(order)

    return app


async def _ingest_ready(runtime: Runtime) -> AgencyRegistry:
    """The lifecycle state and agency registry, caught up with their topics; never gives up
    (the record must not be dropped, and judging it on stale state would be wrong)."""
    attempt = 0
    while True:
        try:
            await runtime.accepted.ready(timeout_s=runtime.settings.directory_catchup_timeout_s)
            return await runtime.agencies.ready()
        except Exception as exc:
            delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
            attempt += 1
            log.warning("ingest state not ready (%s); retry in %.1f s", exc, delay)
            await asyncio.sleep(delay)


async def _write_decision(
    runtime: Runtime, decision: Accepted | Duplicate | Rejected, raw: bytes | None, message: Any
) -> None:
    """Write one decision; for inbound records, atomically with the inbound offset."""
    settings = runtime.settings
    inbound = message.topic == settings.inbound_topic
    outputs: list[tuple[str, bytes, bytes | None, int | None]] = []
    if isinstance(decision, Accepted):
        alert = decision.alert
        if inbound:
            alert = replace(alert, inbound_offset=message.offset)
        for order in decision.orders:
            outputs.append(
                (settings.orders_topic, order.to_json(), alert.alert_id.encode(), order.partition)
            )
        # the accepted record goes last: it is what marks the message as seen
        outputs.append((settings.accepted_topic, alert.to_json(), alert.message_id.encode(), None))
    else:
        value = rejection_record(
            decision, raw, topic=message.topic, partition=message.partition, offset=message.offset
        )
        outputs.append((settings.rejected_topic, value, None, None))
    if inbound:
        await runtime.commit_decision(outputs, message)
    else:
        for topic, value, key, partition in outputs:
            await runtime.send(topic, value, key=key, partition=partition)
    if isinstance(decision, Accepted):
        runtime.lifecycle.record(decision.plan, decision.alert.msg_type, decision.alert)
        alert = decision.alert
        runtime.metrics.inbound("accepted")
        runtime.metrics.accepted(alert.priority.value, alert.status)
        log.info(
            "decision=accepted message=%s alert=%s version=%d type=%s priority=%s status=%s"
            " targets=%d orders=%d",
            alert.message_id,
            alert.alert_id,
            alert.version,
            alert.msg_type,
            alert.priority.value,
            alert.status,
            len(alert.targets),
            len(decision.orders),
        )
    elif isinstance(decision, Duplicate):
        runtime.metrics.inbound("duplicate")
        log.info(
            "decision=duplicate message=%s alert=%s version=%d",
            decision.plan.message_id,
            decision.plan.lineage,
            decision.plan.version,
        )
    else:
        if inbound:  # failed orders are counted by _fan_out
            runtime.metrics.inbound("rejected", decision.code.value)
        log.info(
            "decision=rejected code=%s sender=%s identifier=%s pointer=%s message=%s",
            decision.code.value,
            decision.sender,
            decision.identifier,
            decision.pointer,
            decision.message,
        )
