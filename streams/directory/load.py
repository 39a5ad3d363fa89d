"""Bulk load of subscribers into ``loa.directory.changes`` with the producer batch API.

``write_changes`` writes a columnar batch (subscribes, updates, moves and unsubscribes): only
the last change per recipient is written (what compaction would keep anyway), each to its
partition (``recipient_id mod partitions``), encoded vectorized (``streams.directory.wire``).
It returns once the broker has acknowledged every record (``acks=all``, idempotent producer),
so a count it reports is a count the directory holds.

Speed: subscribers in Loa's fixed layout become whole record batches built column-wise
(:mod:`streams.kafkaio.recordbatch`, no Python object per record), and batches go out
round-robin over the partitions, so each produce request carries a batch for every partition
instead of waiting on one partition at a time. The few records outside the fixed layout
(opt-outs, tombstones) use aiokafka's per-record batch builder. Records of one call have
distinct keys, so their order across batches does not change what compaction keeps.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator

import numpy as np
from aiokafka import AIOKafkaProducer

from streams.directory.index import ChangeBatch
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import encode_matrices, encode_subscribers
from streams.kafkaio.clients import appended_batches, make_producer, start_all
from streams.kafkaio.internals import internals_supported
from streams.kafkaio.rawkafka import prebuilt_batches
from streams.regions import RegionRegistry
from streams.settings.model import Settings

__all__ = ["load_synthetic", "write_changes"]

#: Subscribers encoded at once: small enough that the sender keeps the broker busy between
#: encodings, large enough that numpy's per-call cost is amortized.
_CHUNK = 131_072
#: Bytes per record beyond key and value (varints, attributes, headers count): an upper bound.


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
    await start_all(producer)
    topic = settings.directory_topic
    parts = np.uint64(settings.partitions)
    written = 0
    # the loop allocates only untracked bytes and arrays: collections would only cost time
    gc_was = gc.isenabled()
    gc.disable()
    try:
        pending: list[asyncio.Future[object]] = []
        for start in range(0, len(batch), _CHUNK):
            chunk = batch.take(slice(start, start + _CHUNK))
            owner = chunk.ids % parts
            queues = [
                (p, _batches(producer, chunk.take(np.flatnonzero(owner == p)), regions, settings))
                for p in range(settings.partitions)
            ]
            # round-robin: one batch per partition in turn, so a request carries several
            while queues:
                still = []
                for p, queue in queues:
                    builder = next(queue, None)
                    if builder is None:
                        continue
                    pending.append(await producer.send_batch(builder, topic, partition=p))
                    still.append((p, queue))
                queues = still
            written += len(chunk)
            pending = _settled(pending)
            if on_progress is not None:
                on_progress(written)
        await asyncio.gather(*pending)
    finally:
        if gc_was:
            gc.enable()
        await producer.stop()
    return written


def _batches(
    producer: AIOKafkaProducer, part: ChangeBatch, regions: RegionRegistry, settings: Settings
) -> Iterator[object]:
    """The record batches of one partition's share of a chunk, built lazily."""
    if not (settings.directory_raw_kafka and internals_supported()):
        yield from appended_batches(producer, encode_subscribers(part, regions))
        return
    fixed, other = encode_matrices(part, regions)
    for keys, values in fixed:
        yield from prebuilt_batches(keys, values, settings.emit_batch_bytes)
    yield from appended_batches(producer, other)


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
