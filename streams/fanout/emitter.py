"""The fan-out's writer: a chunk's send tasks and its order's progress record, in one Kafka
transaction of the partition's producer; and the records that end an order.

Where it sits: [scheduler] (:mod:`streams.fanout.scheduler`: which order, which recipients, when)
-> [emitter] -> ``loa.sends.<priority>`` partition *p* and ``loa.fanout.progress`` partition *p*.

Guarantee: a chunk's tasks and its cursor (``cursor`` = the last recipient id emitted) commit
together or not at all, with partition *p*'s transactional producer (``<app>-fanout-<p>``,
fenced by a new owner: :mod:`streams.fanout.partitions`). A ``read_committed`` consumer sees
each task once; after a crash the order resumes after the committed cursor.

Speed: by default the record batches are built column-wise, with no Python work per task: each
batch is a copy of a prebuilt batch of the order's record layout (literal bytes written once)
with the encoder's per-task columns written in (:func:`streams.kafkaio.rawkafka.template_batches`);
with ``LOA_FANOUT_RAW_BATCHES=false`` each task is appended with aiokafka's public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaProducer

from streams.directory.index import Selection
from streams.fanout import queue
from streams.fanout.encode import TaskEncoder
from streams.fanout.partitions import OwnedPartition
from streams.fanout.queue import Running
from streams.kafkaio.clients import appended_batches
from streams.kafkaio.internals import internals_supported
from streams.kafkaio.rawkafka import template_batches
from streams.records import Progress
from streams.settings.model import Settings

__all__ = ["ChunkEmitter", "gc_paused"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The append loop allocates only untracked ``bytes``; generation-0 collections triggered
    by the batch builder's bookkeeping would otherwise cost more than the encoding."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ChunkEmitter:
    """Writes the chunks and progress records of the orders of owned partitions."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def write_chunk(
        self,
        p: int,
        part: OwnedPartition,
        running: Running,
        start: int,
        stop: int,
        *,
        done: bool,
        stopped: str | None,
    ) -> Progress:
        """Emit ``running``'s audience ``[start:stop]`` and its progress record in one
        transaction; returns the progress as committed (with the commit's time)."""
        order, audience, kinds = running.order, running.audience, running.kinds
        assert audience is not None and kinds is not None  # planned before its first chunk
        emitted = stop - start
        before = running.progress
        producer = part.producer
        async with producer.transaction():
            if emitted:
                assert running.encoder is not None  # set with the audience
                topic = self._settings.sends_topic(order.priority.value)
                await self.emit(producer, topic, p, running.encoder, audience, kinds, start, stop)
            written = queue.chunk_written(
                before,
                emitted=emitted,
                cursor=int(audience.ids[stop - 1]) if emitted else None,
                done=done,
                stopped=stopped,
                at=time.time(),  # the chunk's tasks are acknowledged: only the commit is left
            )
            await self._send_progress(producer, p, written)
        return queue.chunk_committed(before, written, time.time())

    async def close(self, p: int, part: OwnedPartition, progress: Progress) -> None:
        """Write the finished order's progress again with the commit times of its first and
        last chunks (the record committed with the last chunk could only carry the time just
        before its own commit). Best effort: that record is already a correct ``done``."""
        try:
            async with part.producer.transaction():
                await self._send_progress(part.producer, p, progress)
        except Exception as exc:  # the order is done either way; only the times are coarser
            log.warning("partition %d: closing progress record not written (%r)", p, exc)

    async def write_failed(self, p: int, part: OwnedPartition, running: Running) -> Progress:
        """End an order that cannot be carried out: its progress says ``stopped: failed`` with
        what it emitted, so neither this worker nor a restore takes it up again."""
        progress = queue.failed(running.progress, time.time())
        async with part.producer.transaction():
            await self._send_progress(part.producer, p, progress)
        return progress

    async def _send_progress(self, producer: AIOKafkaProducer, p: int, progress: Progress) -> None:
        await producer.send(
            self._settings.progress_topic, progress.to_json(), key=progress.key, partition=p
        )

    async def emit(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        p: int,
        encoder: TaskEncoder,
        audience: Selection,
        kinds: npt.NDArray[np.uint8],
        start: int,
        stop: int,
    ) -> None:
        """Send ``audience[start:stop]`` in record batches; one ``send_batch`` per full batch
        (column-wise unless ``LOA_FANOUT_RAW_BATCHES=false``: see the module docstring)."""
        batches: Iterator[object]
        if self._settings.fanout_raw_batches and internals_supported():
            batches = (
                batch
                for keys, slots, layout in encoder.columns(audience, start, stop, kinds)
                for batch in template_batches(
                    keys,
                    slots,
                    layout.template,
                    layout.slots,
                    self._settings.emit_batch_bytes,
                    transactional=True,
                )
            )
        else:
            batches = appended_batches(
                producer,
                encoder.encode(audience, start, stop, kinds),
                timestamp_ms=int(time.time() * 1000),
            )
        pending: list[asyncio.Future[object]] = []
        with gc_paused():
            for batch in batches:
                pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
