"""`loa status` per channel on the real broker: a delivery worker whose provider fails some
recipients (they wait on the retry tiers), the receipts agent folding the receipts, and `loa
status`'s reader (and its --json document) reading the tallies back: retrying counts those
recipients once each, with the next attempt, until the provider answers and they are
delivered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streams.delivery import deliver
from streams.delivery.policy import Outcome
from streams.kafkaio.clients import create_topics
from streams.metrics import Metrics
from streams.receipts.fold import ReceiptsAgent
from streams.receipts.status import AlertStatus, StatusReader, as_json
from streams.settings.model import Settings
from tests.integration.test_delivery import _task, _write

pytestmark = pytest.mark.integration

TASKS = 40
FAILING = {3, 7, 11, 20, 33}
ALERT = "test.agency.vn/D1"


class FlakyProvider:
    """503 for the FAILING recipients until :attr:`release` is set; 200 for everyone else."""

    name = "flaky"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def send(self, task: dict[str, Any]) -> Outcome:
        self.calls += 1
        if task["recipient_id"] in FAILING and not self.release.is_set():
            return Outcome.retry("http_503")
        return Outcome.delivered()

    async def close(self) -> None:
        return None


async def _status(settings: Settings) -> AlertStatus:
    async with StatusReader(settings, ALERT) as reader:
        await reader.catch_up()
        return reader.status(1)


async def _until(settings: Settings, done: Any, timeout_s: float = 90.0) -> AlertStatus:
    async with asyncio.timeout(timeout_s):
        while True:
            status = await _status(settings)
            if done(status):
                return status
            await asyncio.sleep(0.5)


async def test_status_counts_each_retrying_recipient_once_until_it_is_delivered(
    make_settings: Any,
) -> None:
    settings = make_settings(delivery_backoff_base_s=0.3, delivery_backoff_cap_s=1.0)
    await create_topics(settings)
    await _write(settings, [_task(r, "extreme") for r in range(TASKS)])
    agent = ReceiptsAgent(settings, Metrics(CollectorRegistry()), flush_every_s=0.2)
    provider = FlakyProvider()
    await agent.start()
    try:
        worker = asyncio.create_task(
            deliver(settings, provider=provider, channel="sms", max_tasks=TASKS)
        )
        # several attempts each (retrying receipts), yet each failing recipient counts once
        waiting = await _until(
            settings,
            lambda s: (
                s.delivered == TASKS - len(FAILING)
                and "sms" in s.channels
                and s.channels["sms"].max_attempt >= 2
            ),
        )
        sms = waiting.channels["sms"]
        assert (sms.retrying, sms.fell_back, sms.failed_for_good) == (len(FAILING), 0, 0)
        assert sms.next_attempt_at is not None and sms.retry_reason == "http_503"
        assert waiting.retrying == len(FAILING) and not waiting.done
        provider.release.set()
        stats = await asyncio.wait_for(worker, 90)
        assert (stats.delivered, stats.failed) == (TASKS, 0)
        final = await _until(settings, lambda s: s.delivered == TASKS and s.retrying == 0)
    finally:
        await agent.stop()
    doc = as_json(final)  # what `loa status --json` prints for the version
    channel = doc["channels"]["sms"]
    assert (channel["delivered"], channel["retrying"]) == (TASKS, 0)
    assert channel["next_attempt_at"] is None
    assert (channel["fell_back"], channel["failed_for_good"]) == (0, 0)
    assert (doc["retrying"], doc["delivered"]) == (0, TASKS)
