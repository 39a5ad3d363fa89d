"""The delivery worker's I/O shell: send tasks in, provider calls, receipts and retries out.

Data flow: ``loa.sends.<priority>`` and its retry tiers ``loa.sends.retry.<priority>.<delay>``
-> [this]
-> a :class:`~streams.delivery.channels.Channel` -> ``loa.sends.receipts``, plus a task's retry
copy on a retry tier and, when it falls back, a task for the recipient's next channel on the
send-task topic of its priority (same key and partition throughout).

How it runs (the decisions are pure and live elsewhere: :mod:`streams.delivery.retry` what an
answer leads to, :mod:`streams.delivery.breaker` whether to call, :mod:`streams.delivery.watermark`
what may be committed; this module reads, calls, writes and counts):

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
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    ProducerFenced,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from streams.delivery.breaker import Endpoint
from streams.delivery.channels import BatchChannel, Channel, LogChannel
from streams.delivery.policy import DeliveryStats, Outcome, TaskBuffer, parse_task
from streams.delivery.retry import (
    RetryPolicy,
    Settled,
    deadline,
    expired,
    plain_task,
    settle,
    settled_receipt,
)
from streams.delivery.watermark import CommitTracker
from streams.kafkaio.clients import appended_batches, make_producer, make_reader, start_all
from streams.records import CHANNELS, Priority
from streams.settings import Settings

__all__ = ["DeliveryMetrics", "deliver", "stop_on_signals"]

log = logging.getLogger("streams.deliver")

_ALL_PRIORITIES = tuple(p.value for p in Priority)
_SEND_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
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
#: A retry due less than this before its task's deadline is counted as near expiry (paged).
NEAR_EXPIRY_S = 600.0


class DeliveryMetrics:
    """The delivery worker's metrics, on an injected registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = PromCounter(
            "loa_delivery_sends_total",
            "Tasks settled for good by this delivery worker, by channel and outcome "
            "(delivered, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.failures = PromCounter(
            "loa_delivery_failures_total",
            "Tasks that failed for good, by channel and reason (http_<status>, expired...).",
            ["channel", "reason"],
            registry=r,
        )
        self.retries = PromCounter(
            "loa_delivery_retries_total",
            "Failed attempts scheduled for another attempt, by channel and reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.retries_scheduled = PromCounter(
            "loa_delivery_retries_scheduled_total",
            "Retry copies written to a retry-tier topic, by channel and tier (its delay).",
            ["channel", "tier"],
            registry=r,
        )
        self.fallbacks = PromCounter(
            "loa_delivery_fallbacks_total",
            "Tasks moved to the recipient's next channel after failing on this one.",
            ["channel"],
            registry=r,
        )
        self.latency = Histogram(
            "loa_delivery_send_seconds",
            "Duration of one provider call, by channel.",
            ["channel"],
            buckets=_SEND_SECONDS,
            registry=r,
        )
        self.in_flight = Gauge(
            "loa_delivery_in_flight", "Provider calls in flight.", ["channel"], registry=r
        )
        self.retry_held = Gauge(
            "loa_delivery_retry_held",
            "Retry copies held in memory until their due time, by tier.",
            ["tier"],
            registry=r,
        )
        self.unsettled = Gauge(
            "loa_delivery_unsettled_tasks",
            "Fetched tasks not yet settled (their offsets not committed): buffered, in "
            "flight or held for a retry.",
            registry=r,
        )
        self.circuit_state = Gauge(
            "loa_delivery_circuit_state",
            "Circuit breaker of each provider endpoint: 0 closed, 1 half-open, 2 open.",
            ["endpoint"],
            registry=r,
        )
        self.circuit_opens = PromCounter(
            "loa_delivery_circuit_opens_total",
            "Times the circuit breaker of a provider endpoint opened.",
            ["endpoint"],
            registry=r,
        )
        self.calls_refused = PromCounter(
            "loa_delivery_calls_refused_total",
            "Calls not made because the endpoint's circuit was open or its Retry-After not "
            "over (the task went to a retry tier), by endpoint and reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.recoveries = PromCounter(
            "loa_delivery_recoveries_total",
            "Times the worker lost its group membership or its producer at a commit and went "
            "back to the committed offsets with a new producer (a starved event loop, a fence).",
            registry=r,
        )
        self.served = Gauge(
            "loa_delivery_channel_served",
            "1 for each channel this delivery worker delivers (every channel without a "
            "--channel filter) while it runs: alert rules page on a channel nobody serves.",
            ["channel"],
            registry=r,
        )
        self.near_expiry = PromCounter(
            "loa_delivery_retries_near_expiry_total",
            "Retries scheduled less than NEAR_EXPIRY_S (600 s) before their task stops being "
            "sent (its alert's expires or the priority's retry limit), by channel.",
            ["channel"],
            registry=r,
        )
        for channel in CHANNELS:
            for outcome in ("delivered", "failed"):
                self.sends.labels(channel, outcome)
            self.in_flight.labels(channel)
            self.near_expiry.labels(channel)
            self.failures.labels(channel, "expired")
            self.retries.labels(channel, "unknown")


class _Hot:
    """The metric children every call touches, looked up once per label set: a
    ``labels()`` lookup costs microseconds, several per call at thousands of calls a second."""

    def __init__(self, metrics: DeliveryMetrics) -> None:
        self.metrics = metrics
        self._in_flight: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        self._sends: dict[tuple[str, str], Any] = {}
        #: (state, opened) last published per endpoint
        self.circuit: dict[str, tuple[int, int]] = {}

    def in_flight(self, channel: str) -> Any:
        child = self._in_flight.get(channel)
        if child is None:
            child = self._in_flight[channel] = self.metrics.in_flight.labels(channel)
        return child

    def latency(self, channel: str) -> Any:
        child = self._latency.get(channel)
        if child is None:
            child = self._latency[channel] = self.metrics.latency.labels(channel)
        return child

    def sends(self, channel: str, outcome: str) -> Any:
        child = self._sends.get((channel, outcome))
        if child is None:
            child = self._sends[(channel, outcome)] = self.metrics.sends.labels(channel, outcome)
        return child


class _Seen:
    """The most recent ``capacity`` idempotency keys (insertion-ordered dict as a FIFO)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: dict[str, None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """True when ``key`` is new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            del self._keys[next(iter(self._keys))]
        return True

    def clear(self) -> None:
        self._keys.clear()


#: A record to write: topic, value, key, partition.
_Record = tuple[str, bytes, bytes | None, int]


@dataclass(slots=True)
class _Item:
    """One fetched task: where it came from (to commit it) and what it asks."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    task: dict[str, Any]
    #: The ownership generation of ``tp`` when fetched (stale after a revoke).
    generation: int
    #: From a retry tier (its key was seen before; not a duplicate).
    retry: bool


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

    producer = new_producer()
    run = _Run(
        settings,
        consumer,
        producer,
        provider,
        metrics,
        policy,
        group=group,
        name=name,
        channel=channel,
        priorities=priorities,
        max_in_flight=concurrency or settings.delivery_max_in_flight,
        timeout_s=timeout_s,
        clock=clock,
        rand=rand,
        seen=_Seen(dedup_keys),
        new_producer=new_producer,
    )
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
    s = run.stats
    log.info(
        "deliver %s: %d delivered, %d failed, %d duplicates dropped, %d invalid, %d retries, "
        "%d fallbacks",
        name,
        s.delivered,
        s.failed,
        s.duplicates,
        s.invalid,
        s.retries,
        s.fallbacks,
    )
    return s


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what settled before partitions move; forgets what the next owner redoes."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.run.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.run.assign(assigned)


class _Run:
    """One run's state: buffer, held retries, calls in flight, records to commit, stats."""

    #: Buffered tasks per priority above which its partitions are paused.
    BUFFER_HIGH = 5_000

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: Any,
        provider: Channel,
        metrics: DeliveryMetrics,
        policy: RetryPolicy,
        *,
        group: str,
        name: str,
        channel: str | None,
        priorities: Sequence[str],
        max_in_flight: int,
        timeout_s: float,
        clock: Callable[[], float],
        rand: Callable[[], float],
        seen: _Seen,
        new_producer: Callable[[], Any] | None = None,
    ) -> None:
        self.settings, self.consumer, self.producer = settings, consumer, producer
        self._new_producer = new_producer
        self.provider, self.metrics, self.policy = provider, metrics, policy
        self.hot = _Hot(metrics)
        self.group, self.name, self.channel = group, name, channel
        self.topic_priority = {settings.sends_topic(p): p for p in priorities}
        self.tier_of = {settings.retry_topic(p, t): t for p in priorities for t in policy.tiers_s}
        self.max_in_flight, self.timeout_s = max_in_flight, timeout_s
        self.clock, self.rand, self.seen = clock, rand, seen
        self.stats = DeliveryStats()
        self.buffer = TaskBuffer()
        #: (topic, value, key, partition) records per settled task, released with its offset
        self.tracker: CommitTracker[TopicPartition, _Record] = CommitTracker()
        self.generation: dict[TopicPartition, int] = {}
        self._generations = itertools.count(1)
        self.held: list[tuple[float, int, _Item]] = []  # (due_at, seq, item): a heap
        self.held_per_tp: Counter[TopicPartition] = Counter()
        self._seq = itertools.count()
        self.in_flight: Counter[str] = Counter()
        #: (item, outcome, floor_s, called): answers and refusals not yet settled
        self.answers: list[tuple[_Item, Outcome, float, bool]] = []
        self.endpoints: dict[str, Endpoint] = {}
        #: Calls in flight and the tasks each is for.
        self.calls: dict[asyncio.Task[None], list[_Item]] = {}
        #: Tasks per call: the channel's ``batch`` when it sends several at once, else 1.
        self._batch = max(int(getattr(provider, "batch", 1)), 1)
        self._batched = cast(BatchChannel, provider)
        #: Retry copies written and not yet fetched back (no idle exit while some are out).
        self.retries_out = 0
        #: Fresh tasks fetched and not yet settled, by key (a repeat of one is a duplicate).
        self.active: dict[str, _Item] = {}
        self.woken = asyncio.Event()
        self.commit_lock = asyncio.Lock()
        self._last_commit = 0.0
        #: The most urgent buffered task's channel has no room for another call.
        self._full = False

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
        async with asyncio.TaskGroup() as calls:
            while not stop.is_set() and (max_tasks is None or self.stats.receipts < max_tasks):
                fetched = await self._fetch(self._fetch_timeout_ms(), batch_size)
                self._release_due()
                budget = None if max_tasks is None else max_tasks - self.stats.receipts
                self._dispatch(calls, budget)
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
            while sum(self.in_flight.values()):
                self.woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), 0.1)
                self._settle_answers()
                await self._commit()
        self._settle_answers()
        await self._commit(force=True)

    def _busy(self) -> bool:
        # retry copies this worker wrote and has not read back yet are work to come
        return (
            bool(len(self.buffer) or self.held or sum(self.in_flight.values()) or self.answers)
            or self.retries_out > 0
            or self.tracker.pending()
        )

    def _fetch_timeout_ms(self) -> int:
        if self.answers or (len(self.buffer) and not self._full):
            return 0
        if self._full:
            return 10  # a call slot or a rate-limit token comes back any moment
        if self.held or sum(self.in_flight.values()):
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
                self.tracker.add(tp, record.offset)
                self._take(tp, record, generation, now)
        self.metrics.unsettled.set(self.tracker.total_unsettled())
        return n

    def _take(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], generation: int, now: float
    ) -> None:
        """File one fetched record: buffer, hold (a retry not yet due) or settle at once."""
        task = self._task(record)
        retry = tp.topic in self.tier_of
        if task is None:
            self.tracker.settle(tp, record.offset)
            return
        if self.channel is not None and task["channel"] != self.channel:
            self.stats.skipped += 1
            self.tracker.settle(tp, record.offset)
            return
        key = str(task["idempotency_key"])
        if not retry and (key in self.seen or key in self.active):
            self.stats.duplicates += 1
            self.tracker.settle(tp, record.offset)
            return
        item = _Item(tp, record.offset, record.key, task, generation, retry)
        if retry:
            self.retries_out = max(self.retries_out - 1, 0)
        else:
            self.active[key] = item
        due = float(task.get("due_at", 0.0)) if retry else 0.0
        if due > now:
            self._hold(item, due)
        else:
            self.buffer.add(str(task["priority"]), [item])

    def _hold(self, item: _Item, due: float) -> None:
        """Keep ``item`` in memory until ``due`` (then it joins the buffer)."""
        heapq.heappush(self.held, (due, next(self._seq), item))
        self.held_per_tp[item.tp] += 1

    def _task(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
        try:
            task = parse_task(orjson.loads(record.value or b""))
            if task["priority"] not in _ALL_PRIORITIES or task["channel"] not in CHANNELS:
                raise ValueError(f"priority {task['priority']!r}, channel {task['channel']!r}")
            return task
        except (orjson.JSONDecodeError, ValueError) as exc:  # nobody to send a receipt for
            self.stats.invalid += 1
            log.warning(
                "unreadable send task dropped (%s:%d): %s", record.topic, record.offset, exc
            )
            return None

    def _release_due(self) -> None:
        now = self.clock()
        while self.held and self.held[0][0] <= now:
            _, _, item = heapq.heappop(self.held)
            self.held_per_tp[item.tp] -= 1
            if self._current(item):
                self.buffer.add(str(item.task["priority"]), [item])

    def _tier_label(self, topic: str) -> str:
        return topic.rpartition(".")[2]

    def _current(self, item: _Item) -> bool:
        return self.generation.get(item.tp) == item.generation

    # -- calls ---------------------------------------------------------------------------

    def _dispatch(self, calls: asyncio.TaskGroup, budget: int | None) -> None:
        """Start calls for buffered tasks, most urgent first, while their channel has room: a
        call per task, or per up to ``batch`` tasks when the channel takes several per call
        (never waiting to fill one: a call takes what is buffered now)."""
        self._full = False
        group: list[_Item] = []
        endpoint = self._endpoint()
        try:
            while budget is None or sum(self.in_flight.values()) < budget:
                taken = self.buffer.take(1)
                if not taken:
                    return
                item: _Item = taken[0]
                if not self._current(item):
                    continue
                channel = str(item.task["channel"])
                if self.in_flight[channel] >= self.max_in_flight:
                    self.buffer.put_back(str(item.task["priority"]), item)
                    self._full = True
                    return
                now = self.clock()
                if expired(item.task, self.policy, now):
                    self._settle(item, Settled("failed", "expired", attempt=_attempts(item)), now)
                    continue
                if not group and not self._admitted(item, endpoint, now):
                    if self._full:
                        return
                    continue
                group.append(item)
                self.in_flight[channel] += 1
                self.hot.in_flight(channel).inc()
                if len(group) >= self._batch:
                    self._start(calls, group, endpoint)
                    group = []
        finally:
            if group:
                self._start(calls, group, endpoint)

    def _admitted(self, item: _Item, endpoint: Endpoint, now: float) -> bool:
        """Whether a new call may start with ``item``; if not, ``item`` is put back (the rate
        limit: :attr:`_full` set), held in memory (a short Retry-After) or refused to a retry
        tier (an open circuit, a long Retry-After)."""
        if endpoint.paced_s(now) > 0:  # the rate limit: no call now, the order is kept
            self.buffer.put_back(str(item.task["priority"]), item)
            self._full = True
            return False
        refused = endpoint.admit(now)
        if refused is None:
            return True
        short = (refused.after_s or 0.0) <= self.policy.tiers_s[0]
        if refused.reason == "rate_limited" and short:
            # the provider named a short wait: wait in memory (the offset stays uncommitted,
            # so a crash loses nothing) rather than write a retry copy for every task
            # refused; longer waits go to a retry tier like an open circuit
            self.metrics.calls_refused.labels(endpoint.name, "rate_limited").inc()
            wait = (refused.after_s or 0.0) * (1.0 + 0.1 * self.rand())  # spread the restart
            self._hold(item, now + wait)
            return False
        # no call: the task waits on a retry tier
        self.metrics.calls_refused.labels(endpoint.name, str(refused.reason)).inc()
        self.answers.append(
            (item, Outcome.retry(str(refused.reason)), refused.after_s or 0.0, False)
        )
        self._circuit_metrics(endpoint)
        return False

    def _start(self, calls: asyncio.TaskGroup, items: list[_Item], endpoint: Endpoint) -> None:
        # the TaskGroup owns the call (a bug in it fails the worker); kept for counting
        call = calls.create_task(self._call(items, endpoint))
        self.calls[call] = items
        call.add_done_callback(self._forget_call)

    def _forget_call(self, call: asyncio.Task[None]) -> None:
        self.calls.pop(call, None)

    def _endpoint(self) -> Endpoint:
        name = str(getattr(self.provider, "endpoint", None) or self.provider.name)
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            s = self.settings
            endpoint = self.endpoints[name] = Endpoint(
                name,
                failures=s.delivery_breaker_failures,
                cooldown_s=s.delivery_breaker_cooldown_s,
                max_retry_after_s=s.delivery_max_retry_after_s,
                rate=s.delivery_rate_per_endpoint,
            )
            self._circuit_metrics(endpoint)
        return endpoint

    def _circuit_metrics(self, endpoint: Endpoint) -> None:
        seen = (int(endpoint.breaker.state), endpoint.breaker.opened)
        if self.hot.circuit.get(endpoint.name) == seen:  # nothing changed: most calls
            return
        self.hot.circuit[endpoint.name] = seen
        self.metrics.circuit_state.labels(endpoint.name).set(int(endpoint.breaker.state))
        opens = self.metrics.circuit_opens.labels(endpoint.name)
        if endpoint.breaker.opened > opens._value.get():
            opens.inc(endpoint.breaker.opened - opens._value.get())

    async def _call(self, items: list[_Item], endpoint: Endpoint) -> None:
        """One provider call (one task, or up to ``batch``) under its own timeout; its answers
        join :attr:`answers`."""
        started = time.perf_counter()
        # only a retry copy carries retry fields: a fresh task goes as it is (no copy)
        tasks = [plain_task(i.task) if i.retry else i.task for i in items]
        outcomes: list[Outcome]
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._batch == 1:
                    outcomes = [await self.provider.send(tasks[0])]
                else:
                    outcomes = await self._batched.send_many(tasks)
            if len(outcomes) != len(tasks):
                raise ValueError(f"{len(outcomes)} outcomes for {len(tasks)} tasks")
        except TimeoutError:
            outcomes = [Outcome.retry("timeout")] * len(items)
        except Exception as exc:  # a channel bug must not lose the task: a failure
            log.exception(
                "channel %s raised on %s", self.provider.name, tasks[0]["idempotency_key"]
            )
            outcomes = [Outcome.failed(f"error_{type(exc).__name__}"[:64])] * len(items)
        finally:
            elapsed = time.perf_counter() - started
            for item in items:
                channel = str(item.task["channel"])
                self.in_flight[channel] -= 1
                self.hot.in_flight(channel).dec()
            self.hot.latency(str(items[0].task["channel"])).observe(elapsed)
        if len(outcomes) == 1:
            endpoint.record(outcomes[0], self.clock())
        else:
            endpoint.record_call(outcomes, self.clock())
        self._circuit_metrics(endpoint)
        self.answers.extend(
            (item, outcome, 0.0, True) for item, outcome in zip(items, outcomes, strict=True)
        )
        self.woken.set()

    # -- settling and committing ----------------------------------------------------------

    def _settle_answers(self) -> None:
        answers, self.answers = self.answers, []
        now = self.clock()
        for item, outcome, floor_s, called in answers:
            if not self._current(item):  # revoked meanwhile: the next owner calls again
                continue
            settled = settle(
                item.task,
                outcome,
                now=now,
                rand=self.rand(),
                policy=self.policy,
                floor_s=floor_s,
                called=called,
            )
            self._settle(item, settled, now, called=called)

    def _settle(self, item: _Item, settled: Settled, now: float, *, called: bool = True) -> None:
        """Queue the records of one settled attempt and mark its offset settled (``called``:
        False for a call an open circuit refused; it is no failed attempt of the task)."""
        task, partition = item.task, item.tp.partition
        channel, priority = str(task["channel"]), str(task["priority"])
        records: list[_Record] = []
        if settled.retry is not None and settled.tier_s is not None:
            topic = self.settings.retry_topic(priority, settled.tier_s)
            records.append((topic, orjson.dumps(settled.retry), item.key, partition))
            self.retries_out += 1
            if called:
                self.stats.retries += 1
                self.metrics.retries.labels(channel, settled.reason or "unknown").inc()
            self.metrics.retries_scheduled.labels(channel, self._tier_label(topic)).inc()
            if deadline(task, self.policy, now) - float(settled.retry["due_at"]) < NEAR_EXPIRY_S:
                self.metrics.near_expiry.labels(channel).inc()
        if settled.fallback is not None:  # the recipient's next channel, same lineage
            topic = self.settings.sends_topic(priority)
            records.append((topic, orjson.dumps(settled.fallback), item.key, partition))
            self.stats.fallbacks += 1
            self.metrics.fallbacks.labels(channel).inc()
        if settled.outcome != "retrying":
            if settled.outcome == "failed":
                self.stats.failed += 1
                self.metrics.failures.labels(channel, settled.reason or "unknown").inc()
            else:
                self.stats.delivered += 1
            self.hot.sends(channel, settled.outcome).inc()
            self.stats.by_priority[priority] = self.stats.by_priority.get(priority, 0) + 1
        doc = settled_receipt(task, settled, worker=self.name, at=now)
        if item.retry:  # the task had a retrying receipt: `loa status` counts tasks by this
            doc["from_retry"] = True
        records.append((self.settings.receipts_topic, orjson.dumps(doc), item.key, partition))
        key = str(task["idempotency_key"])
        if self.active.get(key) is item:
            del self.active[key]
        self.seen.add(key)
        self.tracker.settle(item.tp, item.offset, records)

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
        self.tracker.drop(assigned)
        # what settled since the last commit comes back: it is not a duplicate then
        self.seen.clear()
        self.active.clear()
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
            offsets, records = self.tracker.take()
            if not records and not offsets:
                return
            async with self.producer.transaction():
                # record batches per partition (the public batch API), not a send per record:
                # a settled task writes one to three records, thousands a second
                by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
                for topic, value, key, partition in records:
                    by_partition.setdefault((topic, partition), []).append((key, value))
                for (topic, partition), pairs in by_partition.items():
                    for batch in appended_batches(self.producer, pairs):
                        await self.producer.send_batch(batch, topic, partition=partition)
                if offsets:
                    await self.producer.send_offsets_to_transaction(offsets, self.group)
            self.tracker.committed(offsets)
            self._last_commit = loop.time()
            self.metrics.unsettled.set(self.tracker.total_unsettled())

    def _flow(self) -> None:
        """Pause partitions whose buffered priority or held retries are at their bound."""
        assignment = self.consumer.assignment()
        paused = set()
        for tp in assignment:
            # held retries, or tasks settled behind a slow one, at the memory bound
            full = self.tracker.unsettled(tp) >= self.settings.delivery_retry_hold
            if tp.topic in self.topic_priority:
                full |= self.buffer.size(self.topic_priority[tp.topic]) > self.BUFFER_HIGH
            if full:
                paused.add(tp)
        held: Counter[str] = Counter()  # tasks of the send topics wait on a Retry-After
        for tp, n in self.held_per_tp.items():
            held[tp.topic] += n
        for topic in self.tier_of:
            self.metrics.retry_held.labels(self._tier_label(topic)).set(held[topic])
        if paused:
            self.consumer.pause(*paused)
        resumed = [tp for tp in assignment if tp not in paused]
        if resumed:
            self.consumer.resume(*resumed)

    # -- partition ownership ----------------------------------------------------------------

    def assign(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.generation[tp] = next(self._generations)

    def _calls_on(self, partitions: set[TopicPartition]) -> bool:
        return any(i.tp in partitions for items in self.calls.values() for i in items)

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        """Let the revoked partitions' calls in flight end (each within its timeout), commit
        what settled, then forget their unsettled tasks (the next owner fetches them again)."""
        gone = set(revoked)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s + 1.0
        while self._calls_on(gone) and loop.time() < deadline:
            self.woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), 0.1)
        self._settle_answers()
        with contextlib.suppress(Exception):  # the next owner redoes what did not commit
            await self._commit(force=True)
        self.retries_out = 0  # partitions moved: another worker may read them back
        for tp in revoked:
            self.generation.pop(tp, None)
        self.tracker.drop(revoked)
        self.held = [h for h in self.held if self._current(h[2])]
        self.active = {k: item for k, item in self.active.items() if self._current(item)}
        heapq.heapify(self.held)
        for tp in revoked:
            self.held_per_tp.pop(tp, None)


def _attempts(item: _Item) -> int:
    return int(item.task.get("attempt", 0)) + 1


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
