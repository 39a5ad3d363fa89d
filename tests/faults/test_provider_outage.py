"""Issue 19's fault scenario: the provider is down for 60 s in the middle of an Extreme alert.
Every recipient is delivered after it returns, each once at the provider, and the outage costs
no request storm (the endpoint's circuit refuses calls instead of making them).

The worker is ``loa deliver`` as a user starts it (its own process, the http provider, the
default breaker and back-off settings but a back-off cap of 10 s so the test stays bounded).
Counted from outside Loa: the provider's own log of requests and 200 answers per
``Idempotency-Key`` and a plain aiokafka read_committed receipts reader
(``tests.integration.test_delivery_retries``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any

import pytest

from streams.kafkaio.clients import create_topics
from tests.faults.conftest import wait_until
from tests.integration.test_delivery_retries import (
    CountingProvider,
    Receipts,
    _task,
    _write,
    free_port,
)

pytestmark = pytest.mark.faults

TASKS = 600
OUTAGE_S = 60.0
BACKOFF_CAP_S = 10.0


@pytest.mark.timeout(400)
async def test_provider_down_60_s_mid_extreme_alert_every_recipient_delivered_once_after(
    make_settings: Any,
) -> None:
    settings = make_settings(delivery_backoff_cap_s=BACKOFF_CAP_S)
    await create_topics(settings)
    expires = int(time.time()) + 3_600
    tasks = [_task(r, expires=expires) for r in range(TASKS)]
    keys = {t["idempotency_key"] for t in tasks}
    provider = CountingProvider(free_port()).start()
    env = {
        **os.environ,
        "LOA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOA_APP_ID": settings.app_id,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_PARTITIONS": str(settings.partitions),
        "LOA_DELIVERY_BACKOFF_CAP_S": str(BACKOFF_CAP_S),
        "LOA_METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams",
        "deliver",
        "--provider",
        "http",
        "--url",
        provider.url,
        "--timeout",
        "2",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with Receipts(settings) as receipts:
            await _write(settings, tasks[:200])
            await receipts.until(lambda: len(receipts.final()) >= 200, 60, "first 200 delivered")
            provider.stop()  # nothing listens; every open connection is cut
            down_at = time.monotonic()
            requests_before = sum(provider.calls.values())
            await _write(settings, tasks[200:])
            # the outage goes on for 60 s while the worker keeps the 400 others retrying
            while time.monotonic() - down_at < OUTAGE_S:
                await receipts.poll()
                await asyncio.sleep(0.5)
            retrying = {d["idempotency_key"] for d in receipts.retrying()}
            assert len(retrying) == TASKS - 200  # every task of the outage failed and waits
            assert len(receipts.final()) == 200  # nobody was given up on
            provider.start()
            await receipts.until(
                lambda: len(receipts.final()) >= TASKS, 120, "every recipient after the outage"
            )
            await asyncio.sleep(1)
            await receipts.poll()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        provider.stop()
    await wait_until(lambda: proc.returncode is not None, "worker stopped", 30)

    final = receipts.final()
    assert Counter(d["idempotency_key"] for d in final) == Counter(dict.fromkeys(keys, 1))
    assert {d["outcome"] for d in final} == {"delivered"}
    # at the provider: every key delivered once; every request named its key (no keyless call)
    assert set(provider.delivered) == keys and set(provider.delivered.values()) == {1}
    # no request storm: while it was down nothing answered, and once back the worker's
    # requests were about one per task still to deliver (plus its 1 % of repeats at most)
    after = sum(provider.calls.values()) - requests_before
    assert after <= (TASKS - 200) * 1.1, after
    # the retrying receipts name why, and when the next attempt comes
    for doc in receipts.retrying():
        assert doc["reason"] in ("connection", "circuit_open", "timeout"), doc
        assert doc["next_attempt_at"] >= doc["at"]
