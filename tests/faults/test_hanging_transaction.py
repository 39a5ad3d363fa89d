"""A transaction the previous owner left with no end marker (a *hanging* transaction).

Kafka 4.4 leaves one when a broker stops with no other replica to lead: the coordinator finds
no leader for the partitions, skips their markers and records the transaction as complete
(``test_broker_restart`` met it: 1,000 tasks twice). The timing of that is luck, so this test
makes the same state on purpose, on a broker of its own: with the broker's partition
verification off (``transaction.partition.verification.enable``, the check Kafka added against
hanging transactions), a producer with the fan-out's transactional id writes tasks and a
progress record to partition :data:`P` without telling the coordinator (aiokafka is made to
skip ``AddPartitionsToTxn``) and stops. The coordinator knows of nothing open, so the next
owner's ``InitProducerId`` aborts nothing, exactly as after the skipped markers.

The next worker must abort those records before it restores the partition: else its restore
stops at the stale cursor and its first commit publishes the leftovers. Read back by librdkafka
(``read_committed``): every subscriber once, none of the leftover tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafkaio.clients import make_producer
from streams.kafkaio.transactions import Gap, stable_gaps
from streams.records import Priority, Progress
from streams.settings.model import Settings
from tests.faults.conftest import (
    OWN_BROKER_PORT,
    Workers,
    emitted_share,
    make_stage,
    publish_national,
    read_back,
    sends_end,
    set_channel_rate,
    wait_done,
    wait_progress,
)

pytestmark = pytest.mark.faults

log = logging.getLogger(__name__)

SUBSCRIBERS = 40_000
#: ``oa`` tasks/s while the first worker runs: chunks of 400, about 10 s for the fan-out.
THROTTLE = 4_000.0
#: The partition given a hanging transaction, and how many leftover tasks it holds.
P = 1
LEFTOVER = 500
#: Recipient ids no subscriber has: a leftover task that reaches a reader is an ``extra``.
LEFTOVER_BASE = 10**12

VERIFICATION = "transaction.partition.verification.enable"


async def set_verification(settings: Settings, enabled: bool) -> None:
    """Kafka's check that a transactional write belongs to a transaction the coordinator knows
    (a dynamic broker setting of the test's own broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        value = "true" if enabled else "false"
        broker = ConfigResource(ConfigResourceType.BROKER, "1", configs={VERIFICATION: value})
        await admin.alter_configs([broker])
    finally:
        await admin.close()


async def leave_hanging(settings: Settings, cursor_of: Progress) -> None:
    """Write :data:`LEFTOVER` tasks and a progress record past ``cursor_of`` to partition
    :data:`P` in a transaction the coordinator never hears of, and stop without ending it."""
    sends = TopicPartition(settings.sends_topic(Priority.EXTREME.value), P)
    progress = TopicPartition(settings.progress_topic, P)
    producer = make_producer(settings, transactional_id=f"{settings.app_id}-fanout-{P}")
    await producer.start()  # fences the killed worker's producer (its open chunk is aborted)
    try:
        await producer.begin_transaction()
        # aiokafka sends AddPartitionsToTxn for a partition it has not added yet; marked added,
        # it writes to them at once and the coordinator knows of no partition of this transaction
        producer._txn_manager._txn_partitions.update({sends, progress})
        sent = [
            await producer.send(
                sends.topic, b"{}", key=str(LEFTOVER_BASE + i).encode(), partition=P
            )
            for i in range(LEFTOVER)
        ]
        ahead = dataclasses.replace(
            cursor_of, emitted=cursor_of.emitted + LEFTOVER, cursor=LEFTOVER_BASE + LEFTOVER - 1
        )
        sent.append(
            await producer.send(progress.topic, ahead.to_json(), key=ahead.key, partition=P)
        )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()  # no EndTxn: nothing will ever write this transaction's markers


async def _gaps_that_stay(settings: Settings, partitions: list[TopicPartition]) -> list[Gap]:
    """The gaps between last stable offset and end still there after 10 s of looking."""
    for _ in range(50):
        gaps = await stable_gaps(settings, partitions)
        if not gaps:
            return []
        await asyncio.sleep(0.2)
    return list(gaps)


@pytest.mark.timeout(600)
async def test_a_hanging_transaction_of_the_previous_owner_is_aborted_not_published(
    own_broker: dict[str, str], workers: Workers, tmp_path: Path
) -> None:
    stage = await make_stage(f"127.0.0.1:{OWN_BROKER_PORT}", tmp_path, SUBSCRIBERS)
    settings = stage.app("hanging")
    await set_verification(settings, enabled=False)
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    worker = workers.start(settings, "worker")
    alert_id = await publish_national(stage, worker)

    def midway(latest: dict[int, Progress]) -> bool:
        return P in latest and 0.10 < emitted_share(SUBSCRIBERS)(latest) < 0.60

    seen = await wait_progress(settings, alert_id, midway, timeout_s=120)
    worker.kill()
    await leave_hanging(settings, seen[P])
    await set_verification(settings, enabled=True)

    sends = TopicPartition(settings.sends_topic(Priority.EXTREME.value), P)
    progress = TopicPartition(settings.progress_topic, P)
    hanging = {gap.partition for gap in await stable_gaps(settings, [sends, progress])}
    assert hanging == {sends, progress}, "the test did not leave a hanging transaction"

    await set_channel_rate(settings, "oa", None)
    workers.start(settings, "worker2")
    final = await wait_done(settings, alert_id)
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS
    # the worker's own transactions come and go (after the last chunk, a closing progress
    # record with the commit times): what must not stay open is the hanging one
    assert await _gaps_that_stay(settings, [sends, progress]) == []

    result = await read_back(stage, settings, start)
    log.warning("hanging transaction on partition %d; read back %s", P, result)
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert "aborted what an earlier owner left open" in (tmp_path / "worker2.log").read_text()
