"""Topic layout against the real broker: replication defaults, mismatches, worker refusal."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient

from streams.kafkaio.clients import (
    check_worker_topics,
    client_options,
    create_topics,
    topic_specs,
)
from streams.settings.model import Settings
from tests.integration.conftest import run_loa


async def settled_topics(settings: Settings) -> None:
    """Create the topics and wait until the broker's metadata shows all of them (a topic just
    created may be listed without partitions for a moment)."""
    await create_topics(settings)
    for _ in range(100):
        problems, _ = await check_worker_topics(settings)  # every topic described, none missing
        if not problems:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the topics never settled")


async def test_single_broker_gets_replication_one_and_min_insync_one(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await create_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        for _ in range(50):  # a new topic's partitions reach the metadata a moment later
            topics = await admin.describe_topics([settings.orders_topic])
            if topics[0]["partitions"]:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    assert {len(p["replicas"]) for p in topics[0]["partitions"]} == {1}


async def test_topics_create_reports_topics_whose_partitions_differ(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=4)
    await settled_topics(settings)
    code, out, err = await run_loa(dataclasses.replace(settings, partitions=6), "topics", "create")
    assert code == 1, (out, err)
    assert out.strip() == "created 0 topics"
    assert f"differs from the settings: {settings.orders_topic}: 4 partitions, settings want 6" in (
        err.splitlines()
    )
    partitioned = [t for t in topic_specs(settings) if t.num_partitions > 1]
    assert len(err.splitlines()) == len(partitioned)  # the one-partition topics agree


async def test_worker_refuses_to_start_on_a_partition_count_mismatch(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=4)
    await settled_topics(settings)
    code, _, err = await run_loa(dataclasses.replace(settings, partitions=8), "worker")
    assert code == 6  # ExitCode.TOPIC_MISSING, as documented (issue 20: it was 1)
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    partitioned = sum(t.num_partitions > 1 for t in topic_specs(settings))
    assert line.startswith(
        f"error: the worker does not start: {partitioned} topic(s) differ from the settings"
    )
    assert f"{settings.orders_topic} (4 partitions, settings want 8)" in line
    assert "LOA_PARTITIONS" in line
