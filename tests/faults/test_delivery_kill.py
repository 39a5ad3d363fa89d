"""A delivery worker killed with SIGKILL in the middle of its calls loses nothing: a second
worker of the same group finishes every task, each with exactly one final receipt, and the
provider sees repeats only of calls that were in flight (always with the same idempotency key).

Counted from outside Loa: the provider's log of calls per ``Idempotency-Key`` and a plain
aiokafka read_committed receipts reader (``tests.integration.test_delivery_retries``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from typing import Any

import pytest

from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics
from tests.faults.conftest import group_alive, wait_until
from tests.integration.test_delivery_retries import (
    FAST,
    CountingProvider,
    Receipts,
    _task,
    _worker,
    _write,
    free_port,
)

pytestmark = pytest.mark.faults

TASKS = 400
IN_FLIGHT = 40


async def test_delivery_worker_killed_mid_batch_loses_nothing(make_settings: Any) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    tasks = [_task(r) for r in range(TASKS)]
    keys = {t["idempotency_key"] for t in tasks}
    provider = CountingProvider(free_port(), delay_s=0.2).start()
    env = {
        **os.environ,
        "LOA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOA_APP_ID": settings.app_id,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_PARTITIONS": str(settings.partitions),
        **{f"LOA_{name.upper()}": str(value) for name, value in FAST.items()},
    }
    args = ("--provider", "http", "--url", provider.url, "--concurrency", str(IN_FLIGHT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams",
        "deliver",
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a crash would
    )
    try:
        await _write(settings, tasks)
        await wait_until(lambda: len(provider.calls) >= 120, "120 keys called", 60)
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        assert not group_alive(proc.pid)
        called_by_the_dead = set(provider.calls)
        assert len(called_by_the_dead) < TASKS  # killed mid-run, not after

        async with Receipts(settings) as receipts:
            async with _worker(settings, provider.url, DeliveryMetrics()):
                await receipts.until(
                    lambda: len({d["idempotency_key"] for d in receipts.final()}) >= TASKS,
                    120,
                    "every task settled after the kill",
                )
            await receipts.poll()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        provider.stop()

    final = receipts.final()
    # exactly one final receipt per task for a read_committed reader, every one delivered
    assert Counter(d["idempotency_key"] for d in final) == Counter(dict.fromkeys(keys, 1))
    assert {d["outcome"] for d in final} == {"delivered"}
    assert set(provider.delivered) == keys
    # repeats: only calls of the dead worker whose receipt it never committed, each with its
    # key (the provider asserts header == body): the calls in flight, those settled behind an
    # in-flight call of their partition (their receipts wait for its offset), and the last
    # commit tick's; bounded by a small multiple of the calls in flight
    repeated = {k for k, n in provider.calls.items() if n > 1}
    assert repeated <= called_by_the_dead
    assert len(repeated) <= 3 * IN_FLIGHT
