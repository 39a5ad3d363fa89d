"""Bulk load of subscribers into ``loa.directory.changes`` with the producer batch API.

``write_changes`` writes a columnar batch (subscribes, updates, moves and unsubscribes): only
the last change per recipient is written (what compaction would keep anyway), each to its
partition (``recipient_id mod partitions``), encoded vectorized (``streams.directory.wire``).
It returns once the broker has acknowledged every record (``acks=all``, idempotent producer),
so a count it reports is a count the directory holds.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import numpy as np

from streams.directory.index import ChangeBatch
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import encode_subscribers
from streams.kafka import make_producer
from streams.regions import RegionRegistry
from streams.settings import Settings

__all__ = ["load_synthetic", "write_changes"]

_CHUNK = 200_000


async def write_changes(
    settings: Settings,
    batch: ChangeBatch,
    regions: RegionRegistry,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``batch`` to its partitions; returns the number of records written."""
    batch = batch.last_per_id()
    producer = make_producer(settings)
    await producer.start()
    topic = settings.directory_topic
    parts = np.uint64(settings.partitions)
    written = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for start in range(0, len(batch), _CHUNK):
            chunk = batch.take(slice(start, start + _CHUNK))
            owner = chunk.ids % parts
            for p in range(settings.partitions):
                records = encode_subscribers(chunk.take(np.flatnonzero(owner == p)), regions)
                builder = producer.create_batch()
                # the loop allocates only untracked bytes: collections would only cost time
                gc_was = gc.isenabled()
                gc.disable()
                try:
                    for key, value in records:
                        if builder.append(timestamp=None, key=key, value=value) is None:
                            pending.append(await producer.send_batch(builder, topic, partition=p))
                            builder = producer.create_batch()
                            builder.append(timestamp=None, key=key, value=value)
                finally:
                    if gc_was:
                        gc.enable()
                if builder.record_count():
                    pending.append(await producer.send_batch(builder, topic, partition=p))
            written += len(chunk)
            pending = _settled(pending)
            if on_progress is not None:
                on_progress(written)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


def _settled(pending: list[asyncio.Future[object]]) -> list[asyncio.Future[object]]:
    """Drop acknowledged batches; a failed one raises here (and the load stops loudly)."""
    still = []
    for future in pending:
        if future.done():
            future.result()
        else:
            still.append(future)
    return still


async def load_synthetic(
    settings: Settings,
    n: int,
    seed: int,
    regions: RegionRegistry,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    return await write_changes(
        settings,
        synthetic_subscribers(n, seed, regions, h3_resolution=settings.h3_resolution),
        regions,
        on_progress=on_progress,
    )
