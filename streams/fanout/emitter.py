"""Emits an order's send tasks with aiokafka's batch API and reports progress.

Per recipient the hot loop does one ``BatchBuilder.append``; a full batch (``LOA_EMIT_BATCH_BYTES``)
goes out with one ``send_batch``. The garbage collector is paused while a chunk is appended:
the loop allocates only untracked ``bytes``, and generation-0 collections triggered by the
builder's bookkeeping otherwise cost more than the encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

from aiokafka import AIOKafkaProducer

from streams.directory.index import DirectoryPartition
from streams.fanout.encode import TaskEncoder, select_audience
from streams.metrics import Metrics
from streams.records import FanoutOrder, Progress
from streams.regions import RegionRegistry

__all__ = ["emit_order"]

log = logging.getLogger(__name__)

ProgressSink = Callable[[Progress], Awaitable[None]]

_PROGRESS_EVERY_S = 0.5


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def emit_order(
    order: FanoutOrder,
    directory: DirectoryPartition,
    regions: RegionRegistry,
    producer: AIOKafkaProducer,
    *,
    topic: str,
    chunk: int,
    report: ProgressSink,
    metrics: Metrics | None = None,
) -> Progress:
    """Select the order's audience in ``directory`` and send one task per recipient."""
    started = time.time()
    audience = select_audience(order, directory, regions)
    targeted = len(audience)
    encoder = TaskEncoder(order)
    progress = Progress(
        alert_id=order.alert_id,
        version=order.version,
        partition=order.partition,
        priority=order.priority.value,
        targeted=targeted,
        emitted=0,
        done=False,
        started_at=started,
    )
    await report(progress)
    pending: list[asyncio.Future[object]] = []
    emitted = 0
    first_task_at: float | None = None
    last_report = time.monotonic()
    batch = producer.create_batch()
    timestamp_ms = int(started * 1000)
    for start in range(0, targeted, chunk):
        with gc_paused():
            for key, value in encoder.encode(audience, start, start + chunk):
                if batch.append(timestamp=timestamp_ms, key=key, value=value) is None:
                    pending.append(
                        await producer.send_batch(batch, topic, partition=order.partition)
                    )
                    emitted += batch.record_count()
                    batch = producer.create_batch()
                    timestamp_ms = int(time.time() * 1000)
                    batch.append(timestamp=timestamp_ms, key=key, value=value)
        if first_task_at is None and emitted:
            first_task_at = time.time()
        if metrics is not None:  # one vectorized count per chunk (np.bincount over channels)
            metrics.emitted(order.priority.value, audience.channel[start : start + chunk])
        pending = _settled(pending)
        if time.monotonic() - last_report > _PROGRESS_EVERY_S:
            last_report = time.monotonic()
            await report(replace(progress, emitted=emitted, first_task_at=first_task_at))
    if batch.record_count():
        pending.append(await producer.send_batch(batch, topic, partition=order.partition))
        emitted += batch.record_count()
    if pending:
        await asyncio.gather(*pending)
    finished = time.time()
    done = replace(
        progress,
        emitted=emitted,
        done=True,
        first_task_at=first_task_at or (finished if emitted else None),
        finished_at=finished,
    )
    await report(done)
    log.info(
        "fanout %s v%d partition %d: %d targeted, %d emitted in %.2f s",
        order.alert_id,
        order.version,
        order.partition,
        targeted,
        emitted,
        finished - started,
    )
    return done


def _settled(pending: list[asyncio.Future[object]]) -> list[asyncio.Future[object]]:
    """Drop delivered batches; a failed one raises here (the order is then retried whole)."""
    still = []
    for future in pending:
        if future.done():
            future.result()
        else:
            still.append(future)
    return still
