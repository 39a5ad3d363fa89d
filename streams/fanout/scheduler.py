"""The fan-out loop: which order's next chunk runs, when, and what ends an order.

Where it sits: ``loa.fanout.orders`` partition *p* -> [partitions] -> [scheduler] -> [emitter]
-> ``loa.sends.<priority>`` partition *p* and ``loa.fanout.progress``. The partitions
(:mod:`streams.fanout.partitions`) are the owned ones, with their fencing producers and restored
order queues; the emitter (:mod:`streams.fanout.emitter`) writes a chunk and its cursor. The
``fanout`` agent only hands orders over.

* **Orders are state, not in-flight messages.** The agent submits each order and moves on, so a
  long routine order never blocks the partition behind it. When a worker takes partition *p*,
  it restores *p*'s unfinished orders from the orders topic and the committed cursors on the
  progress topic before it emits anything for *p* (:mod:`streams.fanout.partitions`).
* **Priority.** One chunk at a time, always from the most urgent order (the pure queue,
  :mod:`streams.fanout.queue`: extreme, severe, routine; then the oldest), so an extreme alert
  that arrives during a routine national fan-out starts at the next chunk boundary and is emitted
  in full before the routine remainder resumes.
* **Exactly once.** A chunk of tasks and its order's progress record are written in one Kafka
  transaction by partition *p*'s producer (:mod:`streams.fanout.emitter`). The audience is
  selected when the order starts (and again on resume); a subscriber added with an id below the
  cursor after that is not reached by that order.
* **Stops.** Before each chunk: a Cancel of the lineage or the alert's expiry ends the order
  with what it emitted and says why on its progress record. An order that cannot be carried
  out (a chunk fails three times, the last time with a poison error: an unknown region, a
  malformed cell or expiry) ends as ``failed``, so poison never holds its partition; Kafka and
  network errors are retried for as long as the partition is owned (:mod:`streams.retrying`
  classifies them by type).
* **Throttles.** Per channel, the worker's share of the cluster limit (``throttle.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
from aiokafka.errors import ProducerFenced

from streams.directory.service import DirectoryService
from streams.fanout import queue
from streams.fanout.emitter import ChunkEmitter
from streams.fanout.encode import TaskEncoder
from streams.fanout.partitions import FanoutPartitions, OwnedPartition
from streams.fanout.plan import CapPolicy, plan_audience
from streams.fanout.queue import Running
from streams.fanout.throttle import ChannelThrottle
from streams.metrics import Metrics
from streams.records import FanoutOrder, Progress
from streams.regions import RegionRegistry
from streams.retrying import Failed, Failure, RetryPolicy, Then
from streams.settings.model import Settings

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
        self._wake = asyncio.Event()
        #: The partitions this worker owns: what :mod:`streams.kafkaio.ownership` restores and
        #: revokes.
        self.partitions = FanoutPartitions(settings, metrics, woken=self._wake.set)
        self._partitions = self.partitions.owned  # the same dict: the loop runs what it holds
        self._emitter = ChunkEmitter(settings)
        self._task: asyncio.Task[None] | None = None
        self._chunks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.partitions.start()
        self._task = asyncio.create_task(self._run(), name="loa-fanout-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._chunks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.partitions.stop()

    def submit(self, order: FanoutOrder) -> bool:
        """Take an order from the agent once its partition is restored here (never claims it:
        :meth:`streams.fanout.partitions.FanoutPartitions.submit`)."""
        return self.partitions.submit(order)

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

    def _chunk_done(self, part: OwnedPartition) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._chunks.discard(task)
            part.queue.busy = False
            self._wake.set()

        return done

    async def _chunk_guarded(self, p: int, part: OwnedPartition, running: Running) -> None:
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

    async def _chunk(self, p: int, part: OwnedPartition, running: Running) -> None:
        order = running.order
        if running.audience is None or running.kinds is None:
            await self._plan(p, part, running)
        audience = running.audience
        assert audience is not None  # planned
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
        first_chunk = stop > start and running.progress.first_task_at is None
        progress = await self._emitter.write_chunk(
            p, part, running, start, stop, done=done, stopped=stopped
        )
        if done:
            await self._emitter.close(p, part, progress)
        part.queue.committed(running, progress)
        if stop > start:
            self._metrics.emitted(order.priority.value, channels)
        if first_chunk:  # observed when committed, so the first-task SLO alert is timely
            at = progress.first_task_at or time.time()
            self._metrics.first_task(order.priority.value, order.written_at, at)
        if done:
            self._finished(p, running, progress, stopped)

    async def _plan(self, p: int, part: OwnedPartition, running: Running) -> None:
        """Select ``running``'s audience against the directory as of now (waits for it)."""
        order, settings = running.order, self._settings
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

    def _finished(self, p: int, running: Running, progress: Progress, stopped: str | None) -> None:
        order = running.order
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

    async def _fail(self, p: int, part: OwnedPartition, running: Running, exc: Exception) -> None:
        """End an order that cannot be carried out (``stopped: failed``, with what it emitted)."""
        order = running.order
        progress = await self._emitter.write_failed(p, part, running)
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
