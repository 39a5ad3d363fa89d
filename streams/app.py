"""Faust app and agent wiring only: read, call the core, write, count.

Agents (each ``concurrency=1``: Faust may commit past a record still in flight otherwise):

* ``ingest`` on ``loa.alerts.inbound`` (one partition: alerts are few, and their lifecycle
  needs a total order): :class:`streams.ingest.agent.IngestAgent` judges the record and writes
  its decision in one Kafka transaction together with the inbound offset.
* ``fanout`` on ``loa.fanout.orders``: hands each order to the
  :class:`~streams.fanout.scheduler.FanoutScheduler`, which owns the orders of the partitions
  this worker holds (restored from Kafka on assignment) and emits them chunk by chunk in
  transactions, most urgent first.

Loa owns its producers (``acks=all``, idempotent, transactional) instead of Faust's, and the
directory owns its consumer (replay from offset 0 on assignment).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer

from streams.channels import decode_limit
from streams.directory.service import DirectoryService
from streams.errors import RejectionCode
from streams.fanout.scheduler import FanoutScheduler
from streams.health import Readiness
from streams.ingest import Rejected
from streams.ingest.agent import IngestAgent
from streams.kafkaio.clients import create_topics, faust_broker_options, make_producer
from streams.kafkaio.replica import CompactedReplica
from streams.metrics import LagSampler, Metrics, serve, shutdown
from streams.receipts import ReceiptsAgent
from streams.records import FanoutOrder, TaskKind
from streams.regions import RegionRegistry, registry
from streams.settings import Settings

__all__ = ["Runtime", "create_app"]

log = logging.getLogger("loa")


class Runtime:
    """What the agents share: Loa's producer, the directory, ingest and the fan-out."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self.settings = settings
        self.regions = regions
        self.directory = DirectoryService(settings, regions)
        # observability (streams.metrics, streams.receipts): a registry per runtime
        self.metrics = Metrics()
        #: The worker's one readiness record (``/ready``): every owned partition's state.
        self.readiness = Readiness()
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
        await self.ingest.start(self._producer)
        await self.channels.start()
        await self.scheduler.start()
        if self._wanted is not None:
            await self.directory.assign(self._wanted)
            await self.scheduler.assign(self._wanted)
        s = self.settings
        self._metrics_server = serve(
            self.metrics, s.metrics_host, s.metrics_port, readiness=self.readiness
        )
        await self.receipts.start()
        await self.lag.start()
        self.readiness.started()
        self._started.set()

    async def stop(self) -> None:
        self.readiness.started(False)
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

    async def assign(self, partitions: set[int]) -> None:
        self._wanted = partitions
        if self._started.is_set():
            await self.directory.assign(partitions)
            await self.scheduler.assign(partitions)

    def stop_reason(self, order: FanoutOrder) -> str | None:
        """Why an order must stop now: its lineage was cancelled or its alert expired."""
        if order.kind is TaskKind.CANCEL:
            return None  # the Cancel's own tasks tell people to stand down: they always go
        if self.ingest.lifecycle.is_cancelled(order.alert_id):
            return "cancelled"
        if order.expires is not None and datetime.fromisoformat(order.expires) <= datetime.now(UTC):
            return "expired"
        return None


def create_app(settings: Settings) -> faust.App:
    regions = registry()
    runtime = Runtime(settings, regions)
    app = faust.App(
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
            await runtime.ingest.handle(event.message)

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
                await runtime.ingest.write_decision(rejected, message.value, message)
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
                await runtime.ingest.write_decision(rejected, message.value, message)
                continue
            await runtime.scheduler.submit(order)

    return app
