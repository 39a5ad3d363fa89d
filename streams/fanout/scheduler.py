"""The fan-out emitter: durable orders, transactional chunks with cursors, retries, poison.

Where it sits: ``loa.fanout.orders`` partition *p* -> [scheduler] -> ``loa.sends.<priority>``
partition *p* and ``loa.fanout.progress``. The ``fanout`` agent only hands orders over.

* **Orders are state, not in-flight messages.** The agent submits each order and moves on, so a
  long routine order never blocks the partition behind it. When a worker takes partition *p*,
  it restores *p*'s unfinished orders from the orders topic and the committed cursors on the
  progress topic before it emits anything for *p*.
* **Priority.** One chunk at a time, always from the most urgent order (the pure queue,
  :mod:`streams.fanout.queue`: extreme, severe, routine; then the oldest), so an extreme alert
  that arrives during a routine national fan-out starts at the next chunk boundary and is emitted
  in full before the routine remainder resumes.
* **Exactly once.** A chunk of tasks and its order's progress record (``cursor`` = the last
  recipient id emitted) are written in one Kafka transaction by partition *p*'s producer
  (transactional id ``<app>-fanout-<p>``: a new owner of *p* fences the old one). A
  ``read_committed`` consumer sees each task once; after a crash the order resumes after the
  committed cursor. The audience is selected when the order starts (and again on resume); a
  subscriber added with an id below the cursor after that is not reached by that order.
* **Stops.** Before each chunk: a Cancel of the lineage or the alert's expiry ends the order
  with what it emitted and says why on its progress record. An order that cannot be carried
  out (a chunk fails three times, the last time with a poison error: an unknown region, a
  malformed cell or expiry) ends as ``failed``, so poison never holds its partition; Kafka and
  network errors are retried for as long as the partition is owned (:mod:`streams.retrying`
  classifies them by type).
* **Ownership.** A partition is taken only by :meth:`FanoutScheduler.restore`, which
  :mod:`streams.ownership` calls; :meth:`FanoutScheduler.submit` never claims one (the agent
  waits for the restore first).
* **Throttles.** Per channel, the worker's share of the cluster limit (``throttle.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from streams.directory.index import Selection
from streams.directory.service import DirectoryService
from streams.fanout import queue
from streams.fanout.encode import TaskEncoder
from streams.fanout.plan import CapPolicy, plan_audience
from streams.fanout.queue import OrderKey, PartitionQueue, Running, order_key
from streams.fanout.throttle import ChannelThrottle
from streams.kafkaio.clients import appended_batches, make_producer, read_partition
from streams.kafkaio.internals import internals_supported
from streams.kafkaio.rawkafka import prebuilt_batches
from streams.kafkaio.transactions import StableOffsets, abort_hanging
from streams.metrics import Metrics
from streams.records import FanoutOrder, Priority, Progress
from streams.regions import RegionRegistry
from streams.retrying import Failed, Failure, RetryPolicy, Then
from streams.settings import Settings

__all__ = ["FanoutScheduler"]

log = logging.getLogger(__name__)

#: A failed chunk: tried again after 0.5 s doubling to 5 s, for as long as its partition is here.
CHUNK_RETRY = RetryPolicy()
#: A chunk that has failed this often, the last time with an error no retry can fix (the
#: order's own content: an unknown region, a malformed cell or expiry), ends its order as
#: ``failed`` instead of holding its partition forever.
_POISON_ATTEMPTS = 3
#: How often a chunk waiting on a channel budget looks again for a reason to stop (a Cancel,
#: the expiry, a newer version) or, for a paused channel, for a raised limit.
THROTTLE_RECHECK_S = 0.5

StopCheck = Callable[[FanoutOrder], str | None]
Limits = Callable[[], Mapping[str, float]]


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


@dataclass(slots=True)
class _Partition:
    """An owned order partition: its transactional producer and its order queue."""

    producer: AIOKafkaProducer
    queue: PartitionQueue = field(default_factory=PartitionQueue)
    restored: asyncio.Event = field(default_factory=asyncio.Event)


class FanoutScheduler:
    """Runs the orders of the partitions this worker owns, chunk by chunk."""

    def __init__(
        self,
        settings: Settings,
        regions: RegionRegistry,
        directory: DirectoryService,
        metrics: Metrics,
        *,
        stop_reason: StopCheck,
        limits: Limits,
    ) -> None:
        self._settings = settings
        self._regions = regions
        self._directory = directory
        self._metrics = metrics
        self._stop_reason = stop_reason
        self._limits = limits
        self._throttle = ChannelThrottle()
        self._partitions: dict[int, _Partition] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        #: One lock per partition: partitions restore in parallel, one partition once at a time.
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._task: asyncio.Task[None] | None = None
        self._chunks: set[asyncio.Task[None]] = set()
        #: LSO and high watermark probes for the restores (hanging transactions)
        self._offsets = StableOffsets(
            settings, [settings.progress_topic, *(settings.sends_topic(x.value) for x in Priority)]
        )

    async def start(self) -> None:
        await self._offsets.start()
        self._task = asyncio.create_task(self._run(), name="loa-fanout-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._chunks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for part in self._partitions.values():
            await part.producer.stop()
        self._partitions.clear()
        await self._offsets.stop()

    # ------------------------------------------------------------------ ownership

    component = "fanout"

    async def restore(self, partition: int) -> None:
        """Own ``partition``: fence its previous owner, reload its unfinished orders and their
        committed cursors. Idempotent; a failure leaves the partition unowned (retried)."""
        async with self._locks[partition]:
            part = self._partitions.get(partition)
            if part is not None and part.restored.is_set():
                return
            if part is not None:  # a failed restore left it half way: start again
                self._partitions.pop(partition)
                await part.producer.stop()
            producer = make_producer(
                self._settings, transactional_id=f"{self._settings.app_id}-fanout-{partition}"
            )
            began = time.monotonic()
            try:
                await producer.start()  # InitProducerId: fences a previous owner's producer
                fenced = time.monotonic()
                await self._abort_hanging(partition, producer)
                checked = time.monotonic()
                self._partitions[partition] = _Partition(producer)
                await self._load_orders(partition)
                log.info(
                    "fanout partition %d restored: fenced in %.2f s, transactions checked in "
                    "%.2f s, orders read in %.2f s",
                    partition,
                    fenced - began,
                    checked - fenced,
                    time.monotonic() - checked,
                )
            except BaseException:
                self._partitions.pop(partition, None)
                await producer.stop()
                raise
            self._wake.set()

    async def revoke(self, partitions: set[int]) -> None:
        """Let go of ``partitions``: their chunks stop at the next boundary (the producer is
        stopped, so an open transaction is aborted and the next owner resumes the cursor)."""
        for p in partitions:
            async with self._locks[p]:
                part = self._partitions.pop(p, None)
                if part is not None:
                    await part.producer.stop()

    def submit(self, order: FanoutOrder) -> bool:
        """Take an order from the agent (a repeat of a known or finished order is ignored).

        Never claims the order's partition: the agent first waits until this worker restored
        it (:meth:`streams.ownership.Ownership.restored`), so an order is never both missed by
        the restore and dropped here. False when the partition is not restored here (revoked
        meanwhile): its owner's restore reads the order from the orders topic.
        """
        part = self._partitions.get(order.partition)
        if part is None or not part.restored.is_set():
            log.info(
                "fanout %s: partition %d is not restored here; its owner's restore reads it",
                order.alert_id,
                order.partition,
            )
            return False
        if not part.queue.knows(order):
            self._add(part, order, None)
            self._wake.set()
        return True

    async def _abort_hanging(self, p: int, producer: AIOKafkaProducer) -> None:
        """End what the previous owner's producer left open with no end marker in partition
        ``p`` of the progress and send-task topics (only this transactional id writes progress
        ``p``), so the restore reads the last committed cursor and the partition's next commit
        does not publish that owner's last chunk a second time
        (:mod:`streams.kafkaio.transactions`)."""
        settings = self._settings
        progress = TopicPartition(settings.progress_topic, p)
        sends = [TopicPartition(settings.sends_topic(x.value), p) for x in Priority]
        gaps = await abort_hanging(
            self._offsets,
            producer,
            [progress, *sends],
            name=f"fanout partition {p}",
            own=[progress],
        )
        if gaps:
            self._metrics.hanging_aborted.labels(self.component).inc(len(gaps))

    async def _load_orders(self, p: int) -> None:
        settings = self._settings
        part = self._partitions[p]
        # both topics are read at once: a takeover waits for the longer read, not the sum
        cursors, orders = await asyncio.gather(
            _values(settings, settings.progress_topic, p),
            _values(settings, settings.orders_topic, p),
        )
        progress: dict[OrderKey, Progress] = {}
        for value in cursors:
            try:
                done = Progress.from_json(value)
            except Exception:
                continue  # not a progress record: nothing to resume from
            progress[(done.alert_id, done.version, done.partition)] = done
        restored = 0
        for value in orders:
            try:
                order = FanoutOrder.from_json(value)
            except Exception:
                continue  # the agent reports bad orders when it reads them
            if order.partition != p:
                continue  # misrouted: the agent rejects it (it is another partition's)
            if part.queue.knows(order):
                continue
            committed = progress.get(order_key(order))
            if committed is not None and committed.done:
                part.queue.add_finished(order, committed)
                continue
            self._add(part, order, committed)
            restored += 1
        part.restored.set()
        if restored:
            log.info("partition %d: resumed %d unfinished orders", p, restored)

    def _add(self, part: _Partition, order: FanoutOrder, committed: Progress | None) -> None:
        self._seq += 1
        part.queue.add(order, committed, seq=self._seq, now=time.time())

    # ------------------------------------------------------------------ the loop

    def _next(self) -> tuple[int, Running] | None:
        return queue.next_order({p: part.queue for p, part in self._partitions.items()})

    async def _run(self) -> None:
        parallel = max(1, self._settings.fanout_parallel)
        while True:
            picked = self._next() if len(self._chunks) < parallel else None
            if picked is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            p, running = picked
            part = self._partitions[p]
            part.queue.busy = True
            task = asyncio.create_task(self._chunk_guarded(p, part, running))
            self._chunks.add(task)
            task.add_done_callback(self._chunk_done(part))
            # let the chunk start before picking the next one: a more urgent order that
            # arrives meanwhile is picked next
            await asyncio.sleep(0)

    def _chunk_done(self, part: _Partition) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._chunks.discard(task)
            part.queue.busy = False
            self._wake.set()

        return done

    async def _chunk_guarded(self, p: int, part: _Partition, running: Running) -> None:
        """The next chunk of ``running``, retried (:data:`CHUNK_RETRY`) while ``p`` is still
        this worker's; after :data:`_POISON_ATTEMPTS` failures the last one poison, the order
        ends as failed instead; a fenced producer means another worker owns ``p``: stop."""
        poison: list[Exception] = []  # the error that ends the order, once there is one

        async def attempt() -> None:
            if poison:
                await self._fail(p, part, running, poison[0])
            else:
                await self._chunk(p, part, running)

        async def failed(f: Failed) -> Then:
            if isinstance(f.error, ProducerFenced):
                log.warning("partition %d: producer fenced, another worker owns it", p)
                return Then.ABANDON
            if not poison and f.attempt >= _POISON_ATTEMPTS and f.failure is Failure.POISON:
                poison.append(f.error)
                return Then.AT_ONCE
            running.audience = None  # reselect after a failure: the directory may be new
            return Then.RETRY

        await CHUNK_RETRY.run_while(
            attempt,
            lambda: self._partitions.get(p) is part,
            what=f"fanout {running.order.alert_id} partition {p}: chunk",
            log=log,
            on_failure=failed,
        )

    async def _chunk(self, p: int, part: _Partition, running: Running) -> None:
        order = running.order
        settings = self._settings
        if running.audience is None or running.kinds is None:
            directory = await self._directory.ready(p)
            caps = CapPolicy(settings.cap_count, settings.cap_window_s, time.time())
            planned = plan_audience(
                order, directory, self._regions, list(part.queue.history.values()), caps
            )
            running.audience, running.kinds = planned.audience, planned.kinds
            running.encoder = running.encoder or TaskEncoder(order)
            running.progress = queue.planned(
                running.progress,
                targeted=len(planned.audience) + sum(planned.suppressed.values()),
                suppressed=planned.suppressed,
            )
            if not running.counted:
                running.counted = True
                self._metrics.orders_in_progress.labels(order.priority.value).inc()
        audience, kinds = running.audience, running.kinds
        start = (
            0
            if running.cursor < 0
            else int(np.searchsorted(audience.ids, np.uint64(running.cursor), side="right"))
        )

        def why_stop() -> str | None:
            return self._stop_reason(order) or part.queue.superseded(order)

        stopped = why_stop()
        limit = self._throttle_limit()
        stop = start if stopped else min(len(audience), start + limit)
        channels = audience.channel[start:stop]
        if stopped is None:
            # a Cancel, the expiry or a newer version may come while the chunk waits its turn
            stopped = await self._wait_throttle(channels, why_stop)
            if stopped is not None:
                stop = start
                channels = audience.channel[start:stop]
        done = stopped is not None or stop >= len(audience)
        emitted = stop - start
        before = running.progress
        first_chunk = emitted > 0 and before.first_task_at is None
        producer = part.producer
        topic = settings.sends_topic(order.priority.value)
        async with producer.transaction():
            if emitted:
                assert running.encoder is not None  # set with the audience
                await self._emit(producer, topic, p, running.encoder, audience, kinds, start, stop)
            written = queue.chunk_written(
                before,
                emitted=emitted,
                cursor=int(audience.ids[stop - 1]) if emitted else None,
                done=done,
                stopped=stopped,
                at=time.time(),  # the chunk's tasks are acknowledged: only the commit is left
            )
            await producer.send(
                settings.progress_topic, written.to_json(), key=written.key, partition=p
            )
        progress = queue.chunk_committed(before, written, time.time())
        if done:
            await self._close(p, part, progress)
        part.queue.committed(running, progress)
        if emitted:
            self._metrics.emitted(order.priority.value, channels)
        if first_chunk:  # observed when committed, so the first-task SLO alert is timely
            at = progress.first_task_at or time.time()
            self._metrics.first_task(order.priority.value, order.written_at, at)
        if done:
            self._metrics.targeted(order.priority.value, progress.targeted)
            self._metrics.order_finished(progress, written_at=order.written_at)
            if running.counted:
                self._metrics.orders_in_progress.labels(order.priority.value).dec()
            for reason, n in progress.suppressed.items():
                self._metrics.suppressed(reason, n, order.priority.value)
            log.info(
                "fanout %s v%d partition %d: %d targeted, %d emitted in %.2f s%s",
                order.alert_id,
                order.version,
                p,
                progress.targeted,
                progress.emitted,
                (progress.finished_at or progress.started_at) - progress.started_at,
                f", stopped: {stopped}" if stopped else "",
            )

    async def _close(self, p: int, part: _Partition, progress: Progress) -> None:
        """Write the finished order's progress again with the commit times of its first and
        last chunks (the record committed with the last chunk could only carry the time just
        before its own commit). Best effort: that record is already a correct ``done``."""
        try:
            async with part.producer.transaction():
                await part.producer.send(
                    self._settings.progress_topic, progress.to_json(), key=progress.key, partition=p
                )
        except Exception as exc:  # the order is done either way; only the times are coarser
            log.warning("partition %d: closing progress record not written (%r)", p, exc)

    async def _fail(self, p: int, part: _Partition, running: Running, exc: Exception) -> None:
        """End an order that cannot be carried out: its progress says ``stopped: failed`` with
        what it emitted, so neither this worker nor a restore takes it up again."""
        order = running.order
        progress = queue.failed(running.progress, time.time())
        async with part.producer.transaction():
            await part.producer.send(
                self._settings.progress_topic, progress.to_json(), key=progress.key, partition=p
            )
        part.queue.committed(running, progress)
        self._metrics.order_finished(progress, written_at=order.written_at)
        self._metrics.orders_failed.labels(order.priority.value).inc()
        if running.counted:
            self._metrics.orders_in_progress.labels(order.priority.value).dec()
        log.error(
            "fanout %s v%d partition %d: failed, the order cannot be carried out (%r); %d emitted",
            order.alert_id,
            order.version,
            p,
            exc,
            progress.emitted,
        )

    async def _emit(
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
        """Send ``audience[start:stop]`` in record batches; one ``send_batch`` per full batch.

        By default the batches are built column-wise from the encoder's byte matrices, with no
        Python work per task (:mod:`streams.kafkaio.rawkafka`); with
        ``LOA_FANOUT_RAW_BATCHES=false`` each task is appended with aiokafka's public API.
        """
        batches: Iterator[object]
        if self._settings.fanout_raw_batches and internals_supported():
            batches = (
                batch
                for keys, values in encoder.matrices(audience, start, stop, kinds)
                for batch in prebuilt_batches(
                    keys, values, self._settings.emit_batch_bytes, transactional=True
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

    # ------------------------------------------------------------------ throttling

    def _throttle_limit(self) -> int:
        owned = len(self._partitions)
        share = owned / self._settings.partitions if owned else 0.0
        self._throttle.configure(self._limits(), share, time.monotonic())
        return self._throttle.chunk_limit(self._settings.fanout_chunk)

    async def _wait_throttle(
        self, channels: npt.NDArray[np.uint8], why_stop: Callable[[], str | None]
    ) -> str | None:
        """Wait until the chunk's channels have the budget for it; the reason to stop instead if
        one comes meanwhile (checked every :data:`THROTTLE_RECHECK_S`). A channel paused by a
        limit of 0 holds the chunk until the limit is raised: nothing of it goes out."""
        while paused := self._throttle.paused(channels):
            for channel in paused:
                self._metrics.throttled(channel, THROTTLE_RECHECK_S)
            await asyncio.sleep(THROTTLE_RECHECK_S)
            if (why := why_stop()) is not None:
                return why
            self._throttle_limit()  # the limits may have been raised meanwhile
        waits = self._throttle.reserve(channels, time.monotonic())
        if not waits:
            return None
        for channel, seconds in waits.items():
            self._metrics.throttled(channel, seconds)
        deadline = time.monotonic() + max(waits.values())
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, THROTTLE_RECHECK_S))
            if (why := why_stop()) is not None:
                return why
        return None


async def _values(settings: Settings, topic: str, p: int) -> list[bytes]:
    """The committed values of partition ``p`` of ``topic`` (a tombstone reads as empty)."""
    return [record.value or b"" async for record in read_partition(settings, topic, p)]
