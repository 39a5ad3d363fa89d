"""The ingest agent's work: judge one inbound record against current state, write its decision.

Where it sits: ``loa.alerts.inbound`` -> [Faust agent ``ingest`` in ``streams.runtime.app``] ->
:meth:`IngestAgent.handle` -> :func:`streams.ingest.decide` (pure) -> one Kafka transaction
with the decision (a rejection or duplicate, or the accepted message plus one order per
directory partition), its copy on the sender's decision topic (``<prefix>.decisions.<sender>``,
registered agencies only: what an agency's ACL lets it read) and the inbound offset.

Guarantee: each inbound record gets exactly one decision even across crashes (the decision and
the inbound offset commit together; the transactional id ``<app>-ingest-0`` fences a previous
owner of the one inbound partition). Nothing raises out of :meth:`IngestAgent.handle`: Faust
acks a record when an agent raises, so an uncaught exception would silently drop it; a
transaction that fails is retried until it succeeds (a worker stuck there shows as inbound lag).

The lifecycle state (re-publishes, Updates, Cancels) is a replica of the compacted
``loa.alerts.accepted``, the agency registry a replica of ``loa.agencies``; a record is judged
only once both are caught up with their topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from streams.directory.census_replica import CensusReplica
from streams.ingest import Accepted, Duplicate, Rejected, decide, rejection_record
from streams.ingest.agencies import AgencyRegistry
from streams.ingest.agency_service import AgencyRegistryService
from streams.ingest.lifecycle import LifecycleState, Plan
from streams.kafkaio.clients import ensure_decision_topics, make_producer
from streams.kafkaio.internals import transaction_failed_fatally
from streams.kafkaio.replica import CompactedReplica
from streams.kafkaio.transactions import StableOffsets, abort_hanging
from streams.metrics import Metrics
from streams.records import AcceptedAlert
from streams.regions import RegionRegistry
from streams.retrying import RetryPolicy
from streams.settings.model import Settings

__all__ = ["DECISIONS_TOPIC_RETRY_S", "RETRY", "SEND_RETRY", "IngestAgent"]

log = logging.getLogger("loa")

#: Ingest's state and its decision transaction: retried until done (0.5 s doubling to 5 s):
#: the record must not be acked (Faust would commit past it) before its decision is on Kafka.
RETRY = RetryPolicy()
#: A record written outside a transaction: transient errors tried 5 times, then raised.
SEND_RETRY = RetryPolicy(attempts=5, retry_poison=False)
#: How long a decision waits for a census of every directory partition before counting what
#: it has (only while some partition has none: a fresh cluster, or workers starting).
CENSUS_WAIT_S = 5.0
#: How long making a decision topic may take, and when to try again after it failed.
DECISIONS_TOPIC_TIMEOUT_S = 10.0
DECISIONS_TOPIC_RETRY_S = 60.0

Output = tuple[str, bytes, bytes | None, int | None]


class DecisionTopics:
    """Each agency's decision topic (``<prefix>.decisions.<agency>``), made when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: set[str] = set()
        #: topic -> monotonic time before which making it is not tried again
        self._failed: dict[str, float] = {}

    async def of(self, sender: str | None, registry: AgencyRegistry) -> str | None:
        """The decision topic of ``sender`` if it is a registered agency (created when missing),
        else None. Only a registered sender has one: an unknown name must not make a topic.

        A topic that cannot be made (not authorized, a name colliding with another topic) is
        logged and the decision goes to the shared topics only, so an inbound record never
        waits on it; it is tried again after :data:`DECISIONS_TOPIC_RETRY_S`.
        """
        if sender is None or (sender not in registry and sender not in registry.invalid):
            return None
        topic = self.settings.decisions_topic(sender)
        if topic in self._made:
            return topic
        if time.monotonic() < self._failed.get(topic, 0.0):
            return None
        try:
            async with asyncio.timeout(DECISIONS_TOPIC_TIMEOUT_S):
                created = await ensure_decision_topics(self.settings, [sender])
        except Exception as exc:
            self._failed[topic] = time.monotonic() + DECISIONS_TOPIC_RETRY_S
            log.error(
                "decision topic %s of agency %s cannot be made (%s): its decisions go to %s and"
                " %s only; retry in %.0f s",
                topic,
                sender,
                exc or type(exc).__name__,
                self.settings.accepted_topic,
                self.settings.rejected_topic,
                DECISIONS_TOPIC_RETRY_S,
            )
            return None
        if created:
            log.info("created decision topic %s of agency %s", topic, sender)
        self._made.add(topic)
        return topic


class IngestAgent:
    """Ingest state (lifecycle, agencies), its producers, and the decision writer."""

    def __init__(self, settings: Settings, regions: RegionRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.regions = regions
        self.metrics = metrics
        self.lifecycle = LifecycleState()
        self.agencies = AgencyRegistryService(settings)
        self.accepted = CompactedReplica(
            settings,
            settings.accepted_topic,
            partitions=1,
            decode=self._on_accepted,
            name="accepted",
        )
        #: who a decision reaches: every directory partition's census (streams.directory.census)
        self.census = CensusReplica(settings, regions)
        self._producer: AIOKafkaProducer | None = None
        self._txn_producer: AIOKafkaProducer | None = None
        #: decision topics known to exist, and when to try again one that could not be made
        self._decision_topics = DecisionTopics(settings)

    async def start(self, producer: AIOKafkaProducer) -> None:
        """``producer``: the worker's idempotent producer, for writes outside a transaction.
        The transactional one is made when this worker first decides (:meth:`_transactional`):
        every worker making it at start would fence the one that holds the inbound partition."""
        self._producer = producer
        await self.accepted.start()
        await self.agencies.start()
        await self.census.start()

    async def stop(self) -> None:
        await self.accepted.stop()
        await self.agencies.stop()
        await self.census.stop()
        if self._txn_producer is not None:
            await self._txn_producer.stop()
            self._txn_producer = None

    async def handle(self, message: Any) -> None:
        """Judge one inbound record and write its decision with its offset."""
        # every decision already on Kafka is in the lifecycle state before this one is made
        agencies = await self._ready()
        s = self.settings
        decision = decide(
            message.value,
            regions=self.regions,
            partitions=s.partitions,
            max_bytes=s.max_alert_bytes,
            state=self.lifecycle,
            agencies=agencies,
            headers=message.headers,
            require_signatures=s.require_signatures,
            h3_resolution=s.h3_resolution,
            cancel_tasks=s.cancel_tasks,
            reach=self.census.reach,
        )
        await self.write_decision(decision, message.value, message)

    async def write_decision(
        self, decision: Accepted | Duplicate | Rejected, raw: bytes | None, message: Any
    ) -> None:
        """Write one decision; for inbound records, atomically with the inbound offset (other
        topics' rejected records, such as malformed orders, are written on their own)."""
        settings = self.settings
        inbound = message.topic == settings.inbound_topic
        outputs: list[Output] = []
        sender = decision.alert.sender if isinstance(decision, Accepted) else decision.sender
        own = await self._decision_topics.of(sender, self.agencies.registry) if inbound else None
        if isinstance(decision, Accepted):
            alert = decision.alert
            if inbound:
                alert = replace(alert, inbound_offset=message.offset)
            # the decision is pure (no clock): the time it is written is stamped here
            written_at = time.time()
            for order in decision.orders:
                outputs.append(
                    (
                        settings.orders_topic,
                        replace(order, written_at=written_at).to_json(),
                        alert.alert_id.encode(),
                        order.partition,
                    )
                )
            # the accepted record goes last: it is what marks the message as seen
            outputs.append(
                (settings.accepted_topic, alert.to_json(), alert.message_id.encode(), None)
            )
            if own is not None:
                outputs.append((own, alert.to_json(), alert.message_id.encode(), None))
        else:
            value = rejection_record(
                decision,
                raw,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            outputs.append((settings.rejected_topic, value, None, None))
            if own is not None:
                outputs.append((own, value, None, None))
        if inbound:
            await self._commit(outputs, message)
        else:
            for topic, value, key, partition in outputs:
                await self._send(topic, value, key=key, partition=partition)
        self._record(decision, inbound)

    def _record(self, decision: Accepted | Duplicate | Rejected, inbound: bool) -> None:
        """Apply a written decision to the lifecycle state, count and log it."""
        if isinstance(decision, Accepted):
            self.lifecycle.record(decision.plan, decision.alert.msg_type, decision.alert)
            alert = decision.alert
            self.metrics.inbound("accepted")
            self.metrics.accepted(alert.priority.value, alert.status)
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
            self.metrics.inbound("duplicate")
            log.info(
                "decision=duplicate message=%s alert=%s version=%d",
                decision.plan.message_id,
                decision.plan.lineage,
                decision.plan.version,
            )
        else:
            if inbound:  # failed orders are counted by the fan-out
                self.metrics.inbound("rejected", decision.code.value)
            log.info(
                "decision=rejected code=%s sender=%s identifier=%s pointer=%s message=%s",
                decision.code.value,
                decision.sender,
                decision.identifier,
                decision.pointer,
                decision.message,
            )

    async def _ready(self) -> AgencyRegistry:
        """The lifecycle state and agency registry, caught up with their topics; never gives up
        (the record must not be dropped, and judging it on stale state would be wrong)."""
        return await RETRY.run(self._caught_up, what="ingest state", log=log)

    async def _caught_up(self) -> AgencyRegistry:
        await self.accepted.ready(timeout_s=self.settings.directory_catchup_timeout_s)
        registry = await self.agencies.ready()
        await self._census_ready()
        return registry

    async def _census_ready(self) -> None:
        """The latest censuses, waiting at most :data:`CENSUS_WAIT_S` for a partition that has
        none yet (a fresh cluster, a worker restoring): a partial count is said in the
        decision (``reach_unknown``), never waited on for long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CENSUS_WAIT_S
        with contextlib.suppress(Exception):
            await self.census.ready(timeout_s=CENSUS_WAIT_S)
            while len(self.census.censuses()) < self.settings.partitions:
                if loop.time() >= deadline:
                    return
                await asyncio.sleep(0.1)
                await self.census.ready(timeout_s=max(deadline - loop.time(), 0.1))

    async def _send(
        self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None
    ) -> None:
        """Write one record and wait until the broker has it (:data:`SEND_RETRY`)."""
        assert self._producer is not None, "ingest agent not started"
        send = partial(self._producer.send_and_wait, topic, value, key=key, partition=partition)
        await SEND_RETRY.run(send, what=f"write to {topic}", log=log)

    async def _commit(self, outputs: list[Output], message: Any) -> None:
        """Write a decision's records and the inbound offset after it in one transaction.

        Retried until it succeeds (:data:`RETRY`): the record must not be acked (Faust would
        commit past it) before its decision is on Kafka.
        """
        offsets = {TopicPartition(message.topic, message.partition): message.offset + 1}

        async def attempt() -> None:
            producer = await self._transactional()
            try:
                async with producer.transaction():
                    for topic, value, key, partition in outputs:
                        await producer.send(topic, value, key=key, partition=partition)
                    await producer.send_offsets_to_transaction(offsets, self.settings.app_id)
            except Exception as exc:
                if isinstance(exc, ProducerFenced) or transaction_failed_fatally(producer):
                    # The inbound partition was another worker's before this one's, and its
                    # producer (same transactional id) fenced ours: nothing was committed, so
                    # the next attempt takes the id back with a new producer and decides again.
                    self._txn_producer = None
                    with contextlib.suppress(Exception):
                        await producer.stop()
                raise

        await RETRY.run(attempt, what="decision transaction", log=log)

    async def _transactional(self) -> AIOKafkaProducer:
        """The ingest producer (transactional id ``<app>-ingest-0``); starting it fences any
        other worker's, as the new owner of the inbound partition must."""
        if self._txn_producer is None:
            settings = self.settings
            producer = make_producer(settings, transactional_id=f"{settings.app_id}-ingest-0")
            written = [
                TopicPartition(settings.accepted_topic, 0),
                TopicPartition(settings.rejected_topic, 0),
                *(TopicPartition(settings.orders_topic, p) for p in range(settings.partitions)),
            ]
            try:
                await producer.start()
                # what an earlier owner left with no end marker would be published by this
                # producer's first commit (streams.kafkaio.transactions)
                offsets = StableOffsets(settings)
                await offsets.start()
                try:
                    gaps = await abort_hanging(offsets, producer, written, name="ingest")
                finally:
                    await offsets.stop()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            if gaps:
                self.metrics.hanging_aborted.labels("ingest").inc(len(gaps))
            self._txn_producer = producer
        return self._txn_producer

    def _on_accepted(self, key: bytes, value: bytes) -> Plan:
        return self.lifecycle.apply(AcceptedAlert.from_json(value))
