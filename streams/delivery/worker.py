"""The delivery worker's I/O shell: send tasks in, provider calls, receipts and retries out.

Data flow: ``loa.sends.<priority>`` and its retry tiers ``loa.sends.retry.<priority>.<delay>``
-> [this]
-> a :class:`~streams.delivery.channels.Channel` -> ``loa.sends.receipts``, plus a task's retry
copy on a retry tier and, when it falls back, a task for the recipient's next channel on the
send-task topic of its priority (same key and partition throughout).

How it runs (the decisions are pure and live elsewhere: :mod:`streams.delivery.retry` what an
answer leads to, :mod:`streams.delivery.breaker` whether to call, :mod:`streams.delivery.watermark`
what may be committed; the calls in flight are :mod:`streams.delivery.calls`, the settled
records :mod:`streams.delivery.ledger`; this module fetches, holds, commits and owns partitions):

- One consumer group per channel filter (``<app_id>-deliver-<channel>``; ``-all`` without a
  filter), subscribed read_committed to the send-task topics of its priorities and their
  retry tiers (``--priority`` filters both, so no worker passes over another's retries).
  Tasks of other channels are passed over (their offsets still commit).
- Fetched tasks wait in a :class:`~streams.delivery.policy.TaskBuffer` (extreme before severe
  before routine); a retry copy is held in memory until its ``due_at`` (a tier partition is
  paused once it holds ``LOA_DELIVERY_RETRY_HOLD`` copies), then joins the buffer.
- No head-of-line blocking: up to ``LOA_DELIVERY_MAX_IN_FLIGHT`` calls per channel run at once,
  each under its own timeout, and a task settles when its own call ends; nothing waits for a
  batch. Before each call the endpoint's circuit breaker and Retry-After gate are asked: a task
  an open circuit refuses goes to a retry tier without a call; one a Retry-After holds waits
  in memory when the wait is short (up to the first tier), else on a retry tier. A task past
  its alert's ``expires`` is not sent: it ends ``failed``, reason ``expired``.
- Every settled attempt's records (its receipt; a retry copy; a fallback task) are written in a
  transaction together with the offset that covers them, committed per partition only below
  its oldest unsettled task, every few tens of milliseconds
  (:class:`~streams.delivery.watermark.CommitTracker`). A slow call thus delays the receipts
  of the tasks behind it in its partition (by at most its timeout), never their calls.
- SIGTERM/SIGINT (:func:`deliver` with ``stop``): no new calls; the calls in flight end (each
  bounded by its timeout), their records commit, then the worker stops. Held retry copies and
  buffered tasks are not committed: the next owner fetches them again.

Guarantee: for read_committed readers every committed task gets exactly one final receipt
(``delivered`` or ``failed``), after zero or more ``retrying`` receipts, one per failed attempt;
receipts, retry copies, fallback tasks and offsets commit together or not at all. A provider
call is at least once: a crash between a call and its commit repeats it with the same
idempotency key (``Idempotency-Key`` on the http channel), which a provider uses to drop the
repeat. Repeats are bounded: after a crash, the tasks settled but not yet committed (at most
``LOA_DELIVERY_RETRY_HOLD`` per partition, in practice what ran in the last tens of
milliseconds or behind one slow call) are called again. Within one run the worker also drops a
task whose key it already has, in progress or settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    ProducerFenced,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from streams.delivery.calls import Calls, Item
from streams.delivery.channels import Channel, LogChannel
from streams.delivery.ledger import NEAR_EXPIRY_S, Ledger, Seen, tier_label
from streams.delivery.metrics import DeliveryMetrics
from streams.delivery.policy import DeliveryStats, TaskBuffer, parse_task
from streams.delivery.retry import RetryPolicy
from streams.kafkaio.clients import make_producer, make_reader, start_all
from streams.records import CHANNELS, Priority
from streams.settings.model import Settings

__all__ = ["NEAR_EXPIRY_S", "DeliveryMetrics", "deliver", "stop_on_signals"]

log = logging.getLogger("streams.deliver")

_ALL_PRIORITIES = tuple(p.value for p in Priority)
#: How often settled records are committed at most (a transaction per tick).
_COMMIT_EVERY_S = 0.05
#: The broker aborts a delivery worker's transaction left open this long (a crashed worker).
_TRANSACTION_TIMEOUT_MS = 10_000
#: A commit that fails with one of these lost the group or the producer: start over from the
#: committed offsets (:meth:`_Run._commit_or_recover`) rather than exit.
_LOST_GROUP_OR_PRODUCER: tuple[type[BaseException], ...] = (
    ProducerFenced,
    CommitFailedError,
    IllegalGenerationError,
    UnknownMemberIdError,
    RebalanceInProgressError,
)


async def deliver(
    settings: Settings,
    *,
    provider: Channel | None = None,
    channel: str | None = None,
    priorities: Sequence[str] = _ALL_PRIORITIES,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    fail_every: int = 0,
    dedup_keys: int = 1_000_000,
    group_id: str | None = None,
    worker_name: str | None = None,
    concurrency: int | None = None,
    batch_size: int = 2_000,
    max_attempts: int | None = None,
    timeout_s: float = 10.0,
    metrics: DeliveryMetrics | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
) -> DeliveryStats:
    """Deliver send tasks until ``max_tasks`` final receipts were written, ``idle_exit_s``
    passed with nothing fetched, buffered, held or in flight, or ``stop`` is set (then the
    calls in flight finish and commit).

    ``channel`` keeps only tasks of that channel (its own consumer group); ``provider`` is the
    :class:`Channel` to call (default: ``log``); ``concurrency``: calls in flight per channel
    (default ``LOA_DELIVERY_MAX_IN_FLIGHT``); ``timeout_s``: each call's own timeout;
    ``max_attempts``: calls per task before it fails for good (default: until it expires);
    ``batch_size``: records per fetch at most.
    """
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    own_provider = provider is None
    provider = provider if provider is not None else LogChannel(fail_every)
    metrics = metrics if metrics is not None else DeliveryMetrics()
    stop = stop if stop is not None else asyncio.Event()
    name = worker_name or f"deliver-{channel or 'all'}-{uuid.uuid4().hex[:8]}"
    group = group_id or f"{settings.app_id}-deliver-{channel or 'all'}"
    policy = RetryPolicy.from_settings(settings, max_attempts=max_attempts)
    calls = Calls(
        provider,
        settings,
        policy,
        metrics,
        max_in_flight=concurrency or settings.delivery_max_in_flight,
        timeout_s=timeout_s,
        clock=clock,
        rand=rand,
    )
    ledger = Ledger(
        settings,
        policy,
        metrics,
        calls.hot,
        name=name,
        seen=Seen(dedup_keys),
        clock=clock,
        rand=rand,
    )
    run = _new_run(settings, calls, ledger, group=group, channel=channel, priorities=priorities)
    consumer, producer = run.consumer, run.producer
    consumer.subscribe([*run.topic_priority, *run.tier_of], listener=_Listener(run))
    served = (channel,) if channel is not None else CHANNELS
    try:
        await start_all(producer, consumer)
        for name_ in served:
            metrics.served.labels(name_).set(1)
        try:
            await run.loop(stop, max_tasks, idle_exit_s, batch_size)
        finally:
            for name_ in served:
                metrics.served.labels(name_).set(0)
            await consumer.stop()
            await run.producer.stop()
    finally:
        if own_provider:
            await provider.close()
    log.info("deliver %s: %s", name, run.stats.summary())
    return run.stats


def _new_run(
    settings: Settings,
    calls: Calls,
    ledger: Ledger,
    *,
    group: str,
    channel: str | None,
    priorities: Sequence[str],
) -> _Run:
    """The run's consumer (``group``, read_committed) and transactional producer (one
    transactional id per worker name, made again after a fence), around ``calls`` and
    ``ledger``."""
    name = ledger.name
    consumer = make_reader(
        settings, group_id=group, max_partition_fetch_bytes=1024 * 1024, client_id=name
    )

    def new_producer() -> Any:
        return make_producer(
            settings,
            transactional_id=f"{group}-{name}",
            client_id=name,
            # a worker killed mid-transaction blocks read_committed readers of its partitions
            # (receipts, the retry tiers) until the broker aborts it: its transactions last
            # milliseconds, so let the broker give up after seconds, not Kafka's default minute
            transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
        )

    return _Run(
        settings,
        consumer,
        new_producer(),
        calls,
        ledger,
        group=group,
        channel=channel,
        priorities=priorities,
        new_producer=new_producer,
    )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what settled before partitions move; forgets what the next owner redoes."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.run.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.run.assign(assigned)


class _Run:
    """One run: the fetch loop, the buffer and held retries, ownership of partitions, and when
    to commit what the :class:`~streams.delivery.ledger.Ledger` settled (and how to start over
    when a commit finds the group or the producer lost). The calls themselves are
    :class:`~streams.delivery.calls.Calls`'.

    Why this long (~280 lines): fetching, holding, committing, recovering and revoking all
    read and change the partitions' generations and the held retries; split further, each
    piece would take that state as arguments and the ordering rules (settle, then commit,
    then forget a revoked partition) would be spread over classes."""

    #: Buffered tasks per priority above which its partitions are paused.
    BUFFER_HIGH = 5_000

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: Any,
        calls: Calls,
        ledger: Ledger,
        *,
        group: str,
        channel: str | None,
        priorities: Sequence[str],
        new_producer: Callable[[], Any] | None = None,
    ) -> None:
        self.settings, self.consumer, self.producer = settings, consumer, producer
        self.calls, self.ledger, self.metrics = calls, ledger, calls.metrics
        self._new_producer = new_producer
        self.group, self.channel = group, channel
        self.clock = calls.clock
        self.topic_priority = {settings.sends_topic(p): p for p in priorities}
        tiers = calls.policy.tiers_s
        self.tier_of = {settings.retry_topic(p, t): t for p in priorities for t in tiers}
        self.buffer = TaskBuffer()
        self.generation: dict[TopicPartition, int] = {}
        self._generations = itertools.count(1)
        self.held: list[tuple[float, int, Item]] = []  # (due_at, seq, item): a heap
        self.held_per_tp: Counter[TopicPartition] = Counter()
        self._seq = itertools.count()
        self.commit_lock = asyncio.Lock()
        self._last_commit = 0.0

    @property
    def stats(self) -> DeliveryStats:
        return self.ledger.stats

    # -- the loop ------------------------------------------------------------------------

    async def loop(
        self,
        stop: asyncio.Event,
        max_tasks: int | None,
        idle_exit_s: float | None,
        batch_size: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        last_activity = loop.time()
        async with asyncio.TaskGroup() as group:
            while not stop.is_set() and (max_tasks is None or self.stats.receipts < max_tasks):
                fetched = await self._fetch(self._fetch_timeout_ms(), batch_size)
                self._release_due()
                budget = None if max_tasks is None else max_tasks - self.stats.receipts
                self.calls.dispatch(group, self.buffer, budget, self)
                self._settle_answers()
                self._flow()
                await self._commit_or_recover()
                if fetched or self._busy() or not self.consumer.assignment():
                    last_activity = loop.time()
                elif idle_exit_s is not None and loop.time() - last_activity > idle_exit_s:
                    break
                # a fetch of buffered data may return without suspending: let calls,
                # heartbeats and the rebalance listener run every turn
                await asyncio.sleep(0)
            # drain: no new calls; the ones in flight end within their own timeout
            while self.calls.total:
                self.calls.woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.calls.woken.wait(), 0.1)
                self._settle_answers()
                await self._commit()
        self._settle_answers()
        await self._commit(force=True)

    def _busy(self) -> bool:
        # retry copies this worker wrote and has not read back yet are work to come
        return (
            bool(len(self.buffer) or self.held or self.calls.total or self.calls.answers)
            or self.ledger.retries_out > 0
            or self.ledger.tracker.pending()
        )

    def _fetch_timeout_ms(self) -> int:
        if self.calls.answers or (len(self.buffer) and not self.calls.full):
            return 0
        if self.calls.full:
            return 10  # a call slot or a rate-limit token comes back any moment
        if self.held or self.calls.total:
            return 20  # a call may end or a retry come due any moment
        return 200

    async def _fetch(self, timeout_ms: int, batch_size: int) -> int:
        data = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=batch_size)
        n = 0
        now = self.clock()
        for tp, records in data.items():
            generation = self.generation.get(tp)
            if generation is None:  # fetched across a revoke: the next owner has it
                continue
            for record in records:
                n += 1
                self.ledger.tracker.add(tp, record.offset)
                self._take(tp, record, generation, now)
        self.metrics.unsettled.set(self.ledger.tracker.total_unsettled())
        return n

    def _take(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], generation: int, now: float
    ) -> None:
        """File one fetched record: buffer, hold (a retry not yet due) or settle at once."""
        ledger = self.ledger
        task = self._task(record)
        retry = tp.topic in self.tier_of
        if task is None:
            ledger.tracker.settle(tp, record.offset)
            return
        if self.channel is not None and task["channel"] != self.channel:
            ledger.stats.skipped += 1
            ledger.tracker.settle(tp, record.offset)
            return
        key = str(task["idempotency_key"])
        if not retry and (key in ledger.seen or key in ledger.active):
            ledger.stats.duplicates += 1
            ledger.tracker.settle(tp, record.offset)
            return
        item = Item(tp, record.offset, record.key, task, generation, retry)
        if retry:
            ledger.retries_out = max(ledger.retries_out - 1, 0)
        else:
            ledger.active[key] = item
        due = float(task.get("due_at", 0.0)) if retry else 0.0
        if due > now:
            self.hold(item, due)
        else:
            self.buffer.add(str(task["priority"]), [item])

    def _task(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
        try:
            task = parse_task(orjson.loads(record.value or b""))
            if task["priority"] not in _ALL_PRIORITIES or task["channel"] not in CHANNELS:
                raise ValueError(f"priority {task['priority']!r}, channel {task['channel']!r}")
            return task
        except (orjson.JSONDecodeError, ValueError) as exc:  # nobody to send a receipt for
            self.ledger.stats.invalid += 1
            log.warning(
                "unreadable send task dropped (%s:%d): %s", record.topic, record.offset, exc
            )
            return None

    # -- what Calls asks of its owner (streams.delivery.calls.Owner) ------------------------

    def current(self, item: Item) -> bool:
        return self.generation.get(item.tp) == item.generation

    def expire(self, item: Item, now: float) -> None:
        self.ledger.expire(item, now)

    def hold(self, item: Item, due: float) -> None:
        """Keep ``item`` in memory until ``due`` (then it joins the buffer)."""
        heapq.heappush(self.held, (due, next(self._seq), item))
        self.held_per_tp[item.tp] += 1

    def _release_due(self) -> None:
        now = self.clock()
        while self.held and self.held[0][0] <= now:
            _, _, item = heapq.heappop(self.held)
            self.held_per_tp[item.tp] -= 1
            if self.current(item):
                self.buffer.add(str(item.task["priority"]), [item])

    # -- settling and committing ----------------------------------------------------------

    def _settle_answers(self) -> None:
        self.ledger.settle_answers(self.calls.take_answers(), self.current)

    async def _commit_or_recover(self) -> None:
        """:meth:`_commit`, and when the group or the producer was lost meanwhile (a session
        that expired while the loop was starved, another instance fencing this producer),
        start over instead of dying: nothing of the failed transaction is visible, so every
        partition goes back to its committed offset with a new producer (same transactional
        id), and the tasks after it are fetched and called again (same idempotency keys)."""
        try:
            await self._commit()
        except _LOST_GROUP_OR_PRODUCER as exc:
            log.warning(
                "delivery commit failed (%s: %s): back to the committed offsets with a new"
                " producer; calls since then are repeated with the same idempotency keys",
                type(exc).__name__,
                exc,
            )
            self.metrics.recoveries.inc()
            await self._start_over()

    async def _start_over(self) -> None:
        assigned = list(self.consumer.assignment())
        await self.revoke(assigned)  # calls in flight end; their records are dropped
        self.ledger.tracker.drop(assigned)
        # what settled since the last commit comes back: it is not a duplicate then
        self.ledger.seen.clear()
        self.ledger.active.clear()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        if self._new_producer is None:
            raise RuntimeError("the delivery producer was lost and cannot be made again")
        self.producer = self._new_producer()
        await self.producer.start()
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
        self.assign(assigned)

    async def _commit(self, *, force: bool = False) -> None:
        """One transaction: the offsets below every unsettled task and the records of the
        tasks they cover."""
        loop = asyncio.get_running_loop()
        if not force and loop.time() - self._last_commit < _COMMIT_EVERY_S:
            return
        async with self.commit_lock:
            await self.ledger.commit(self.producer, self.group)
            self._last_commit = loop.time()
            self.metrics.unsettled.set(self.ledger.tracker.total_unsettled())

    def _flow(self) -> None:
        """Pause partitions whose buffered priority or held retries are at their bound."""
        assignment = self.consumer.assignment()
        paused = set()
        for tp in assignment:
            # held retries, or tasks settled behind a slow one, at the memory bound
            full = self.ledger.tracker.unsettled(tp) >= self.settings.delivery_retry_hold
            if tp.topic in self.topic_priority:
                full |= self.buffer.size(self.topic_priority[tp.topic]) > self.BUFFER_HIGH
            if full:
                paused.add(tp)
        held: Counter[str] = Counter()  # tasks of the send topics wait on a Retry-After
        for tp, n in self.held_per_tp.items():
            held[tp.topic] += n
        for topic in self.tier_of:
            self.metrics.retry_held.labels(tier_label(topic)).set(held[topic])
        if paused:
            self.consumer.pause(*paused)
        resumed = [tp for tp in assignment if tp not in paused]
        if resumed:
            self.consumer.resume(*resumed)

    # -- partition ownership ----------------------------------------------------------------

    def assign(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.generation[tp] = next(self._generations)

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        """Let the revoked partitions' calls in flight end (each within its timeout), commit
        what settled, then forget their unsettled tasks (the next owner fetches them again)."""
        gone = set(revoked)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.calls.timeout_s + 1.0
        while self.calls.on(gone) and loop.time() < deadline:
            self.calls.woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.calls.woken.wait(), 0.1)
        self._settle_answers()
        with contextlib.suppress(Exception):  # the next owner redoes what did not commit
            await self._commit(force=True)
        self.ledger.retries_out = 0  # partitions moved: another worker may read them back
        for tp in revoked:
            self.generation.pop(tp, None)
        self.ledger.tracker.drop(revoked)
        self.held = [h for h in self.held if self.current(h[2])]
        active = self.ledger.active
        self.ledger.active = {k: item for k, item in active.items() if self.current(item)}
        heapq.heapify(self.held)
        for tp in revoked:
            self.held_per_tp.pop(tp, None)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Any:
    """Set ``stop`` on SIGTERM or SIGINT (drain: the calls in flight finish and commit)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
