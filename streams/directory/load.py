"""Bulk load of subscribers into ``loa.directory.changes`` with the producer batch API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from streams.directory.index import ChangeBatch
from streams.directory.synthetic import encode_subscribers, synthetic_subscribers
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
    """Write subscribers (sorted ids) to their partitions (``recipient_id mod partitions``)."""
    producer = make_producer(settings)
    await producer.start()
    topic = settings.directory_topic
    parts = np.uint64(settings.partitions)
    written = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for start in range(0, len(batch), _CHUNK):
            chunk = _slice(batch, start, start + _CHUNK)
            owner = chunk.ids % parts
            for p in range(settings.partitions):
                records = encode_subscribers(_take(chunk, np.flatnonzero(owner == p)), regions)
                builder = producer.create_batch()
                for key, value in records:
                    if builder.append(timestamp=None, key=key, value=value) is None:
                        pending.append(await producer.send_batch(builder, topic, partition=p))
                        builder = producer.create_batch()
                        builder.append(timestamp=None, key=key, value=value)
                if builder.record_count():
                    pending.append(await producer.send_batch(builder, topic, partition=p))
            written += len(chunk)
            if on_progress is not None:
                on_progress(written)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


async def load_synthetic(
    settings: Settings,
    n: int,
    seed: int,
    regions: RegionRegistry,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    return await write_changes(
        settings, synthetic_subscribers(n, seed, regions), regions, on_progress=on_progress
    )


def _slice(batch: ChangeBatch, start: int, stop: int) -> ChangeBatch:
    return _take(batch, slice(start, stop))


def _take(batch: ChangeBatch, idx: slice | npt.NDArray[np.intp]) -> ChangeBatch:
    return ChangeBatch(
        ids=batch.ids[idx],
        ward=batch.ward[idx],
        channel=batch.channel[idx],
        language=batch.language[idx],
        flags=batch.flags[idx],
        deleted=batch.deleted[idx],
    )
