"""Faust app and agent wiring only: read, call the core, write, count.

Agents (each ``concurrency=1``: Faust may commit past a record still in flight otherwise):

* ``ingest`` on ``loa.alerts.inbound`` (one partition: alerts are few, and their lifecycle
  needs a total order): :class:`streams.ingest.agent.IngestAgent` judges the record and writes
  its decision in one Kafka transaction together with the inbound offset.
* ``fanout`` on ``loa.fanout.orders``: hands each order, once its partition is restored here,
  to the :class:`~streams.fanout.scheduler.FanoutScheduler`, which runs the orders of the
  partitions this worker holds (:mod:`streams.fanout.partitions`, restored from Kafka on
  assignment) and emits them chunk by chunk in transactions, most urgent first.

Loa owns its producers (``acks=all``, idempotent, transactional) instead of Faust's, and the
directory owns its consumer (replay from offset 0 on assignment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer

from streams.directory.service import DirectoryService
from streams.errors import RejectionCode
from streams.fanout.limits import decode_limit
from streams.fanout.scheduler import FanoutScheduler
from streams.health import Readiness
from streams.ingest import Rejected
from streams.ingest.agent import IngestAgent
from streams.kafkaio.clients import create_topics, faust_broker_options, make_producer
from streams.kafkaio.ownership import Ownership, restore_once
from streams.kafkaio.replica import CompactedReplica
from streams.metrics import LagSampler, Metrics, serve, shutdown
from streams.receipts.fold import ReceiptsAgent
from streams.records import FanoutOrder, TaskKind
from streams.regions import RegionRegistry, registry
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = ["Runtime", "create_app", "create_worker", "stop_reason"]

log = logging.getLogger("loa")


class Runtime:
    """What the agents share: Loa's producer, the directory, ingest and the fan-out."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self.settings = settings
        self.regions = regions
        self.directory = DirectoryService(settings, regions)
        # observability (streams.metrics, streams.receipts.fold): a registry per runtime
        self.metrics = Metrics()
        #: The worker's one readiness record (``/ready``): every owned partition's state.
        self.readiness = Readiness()
        self.receipts = ReceiptsAgent(settings, self.metrics, readiness=self.readiness)
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
        self.ingest = IngestAgent(settings, regions, self.metrics)
        # fan-out: channel limits (live, from a compacted topic) and the scheduler
        self.channels: CompactedReplica[float] = CompactedReplica(
            settings,
            settings.channels_topic,
            partitions=1,
            decode=decode_limit,
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
        # the workers' group: order partition p brings directory partition p (co-partitioned)
        self.ownership = Ownership(
            [self.directory, self.scheduler.partitions],
            self.readiness,
            self.metrics,
            name="workers",
        )
        self._replicas: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "runtime not started"
        return self._producer

    async def start(self) -> None:
        await create_topics(self.settings)
        self._producer = make_producer(self.settings)
        await self._producer.start()
        await self.directory.start()
        await self.ingest.start(self._producer)
        await self.channels.start()
        await self.scheduler.start()
        self.ownership.start()
        self._replicas = asyncio.create_task(self._restore_replicas(), name="loa-replicas")
        s = self.settings
        self._metrics_server = serve(
            self.metrics, s.metrics_host, s.metrics_port, readiness=self.readiness
        )
        await self.receipts.start()
        await self.lag.start()
        self.readiness.started()
        self._started.set()

    async def _restore_replicas(self) -> None:
        """The replicas own their one partition for the worker's lifetime: ready once caught up."""
        timeout = self.settings.directory_catchup_timeout_s
        r, m = self.readiness, self.metrics
        await restore_once("accepted", partial(self.ingest.accepted.ready, timeout_s=timeout), r, m)
        await restore_once("channels", partial(self.channels.ready, timeout_s=timeout), r, m)
        await restore_once("agencies", self._agencies_ready, r, m)

    async def _agencies_ready(self) -> None:
        await self.ingest.agencies.ready()

    async def stop(self) -> None:
        self.readiness.started(False)
        await cancel_and_wait(self._replicas)
        await self.ownership.stop()
        await self.lag.stop()
        await self.receipts.stop()
        shutdown(self._metrics_server)
        await self.scheduler.stop()
        await self.directory.stop()
        await self.ingest.stop()
        await self.channels.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def wait_started(self) -> None:
        await self._started.wait()

    def assign(self, partitions: set[int]) -> None:
        """The workers' group gave this worker ``partitions`` of the orders topic (and with
        them the same directory partitions): restored by the ownership task, not here."""
        self.ownership.request(partitions)

    async def submit(self, order: FanoutOrder) -> None:
        """Hand an order to the fan-out once this worker has restored its partition (a read
        path waits for ownership, never claims: the ownership task restores). An order of a
        partition this worker does not own (any more) is left to its owner, whose restore reads
        it from the orders topic; Faust may then commit past it here."""
        if await self.ownership.restored(self.scheduler.partitions.component, order.partition):
            self.scheduler.submit(order)

    def stop_reason(self, order: FanoutOrder) -> str | None:
        """Why an order must stop now (:func:`stop_reason`, against the ingest lifecycle)."""
        return stop_reason(order, self.ingest.lifecycle.is_cancelled, datetime.now(UTC))


def stop_reason(
    order: FanoutOrder, is_cancelled: Callable[[str], bool], now: datetime
) -> str | None:
    """Why an order must stop at ``now``: its lineage was cancelled or its alert expired.

    Pure (the lifecycle lookup and the clock are passed in), so the rule is unit-tested
    without a broker; the scheduler asks it before every chunk.
    """
    if order.kind is TaskKind.CANCEL:
        return None  # the Cancel's own tasks tell people to stand down: they always go
    if is_cancelled(order.alert_id):
        return "cancelled"
    if order.expires is not None and datetime.fromisoformat(order.expires) <= now:
        return "expired"
    return None


def create_app(settings: Settings) -> faust.App:
    return create_worker(settings)[0]


def _faust_app(settings: Settings) -> faust.App:
    """Faust's app: raw bytes in and out, no tables, no web server, topics declared by
    ``loa init`` only, the brokers and credentials of Loa's client factory."""
    return faust.App(
        settings.app_id,
        store="memory://",
        datadir=settings.resolved_data_dir,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1,
        stream_wait_empty=False,
        **faust_broker_options(settings),
    )


def _order_of(value: bytes | None, partition: int) -> FanoutOrder | Rejected:
    """The fan-out order a record of the orders topic holds, or why it is not one (written as
    a rejection: a poison order must not stall its partition)."""
    try:
        order = FanoutOrder.from_json(value or b"")
    except Exception as exc:
        return Rejected(RejectionCode.MALFORMED, f"bad fan-out order: {exc}", "", None, None)
    if order.partition != partition:
        # submitting it would make this worker claim (and fence) another partition
        return Rejected(
            RejectionCode.MALFORMED,
            f"fan-out order for partition {order.partition} on partition {partition}",
            "/partition",
            None,
            None,
        )
    return order


def create_worker(settings: Settings) -> tuple[faust.App, Runtime]:
    """The Faust app and the runtime its agents share (``runtime.readiness`` is the worker's
    one readiness record, ``runtime.metrics`` its metrics)."""
    regions = registry()
    runtime = Runtime(settings, regions)
    app = _faust_app(settings)

    class RuntimeService(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()

    app.service(RuntimeService)

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned")
        runtime.assign({tp.partition for tp in assigned or () if tp.topic == settings.orders_topic})

    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]  # mode stubs

    # acks=False: Faust never commits inbound offsets; the ingest agent commits each one in
    # the transaction of its decision (one committer per offset). Orders' offsets are Faust's.
    inbound = app.topic(settings.inbound_topic, key_type=bytes, value_type=bytes, acks=False)
    orders = app.topic(settings.orders_topic, key_type=bytes, value_type=bytes)

    @app.agent(inbound, concurrency=1)
    async def ingest(stream: Any) -> None:
        await runtime.wait_started()
        async for event in stream.events():
            await runtime.ingest.handle(event.message)

    @app.agent(orders, concurrency=1)
    async def fanout(stream: Any) -> None:
        await runtime.wait_started()
        async for event in stream.events():
            message = event.message
            order = _order_of(message.value, message.partition)
            if isinstance(order, Rejected):
                await runtime.ingest.write_decision(order, message.value, message)
                continue
            await runtime.submit(order)

    return app, runtime
