"""Prometheus metrics of a Loa worker: what SREs watch to see whether alerts reach people.

Sits beside every stage of the data flow: ingest counts its decisions, the fan-out counts
targeted, emitted and suppressed recipients, the receipts agent counts delivery outcomes, and a
periodic task in the worker samples consumer lag and directory sizes. The worker serves them on
``http://LOA_METRICS_HOST:LOA_METRICS_PORT/metrics``.

Every metric lives on an injected :class:`~prometheus_client.CollectorRegistry` (tests make a
fresh one). Names follow Prometheus conventions: ``loa_`` prefix, base units (seconds, records),
``_total`` on counters. Labels are bounded enums only (outcome, reason code, priority, status,
channel, topic, directory partition): never a recipient or alert id. Counters are incremented
once per chunk or batch with a count, never once per recipient.

Guarantee: counters count what this process did since it started (Prometheus ``rate`` and
``increase`` handle restarts). A fan-out order retried after a transient failure is counted
again, as its tasks are produced again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from streams.errors import RejectionCode
from streams.health import Readiness
from streams.records import CHANNELS, Priority, Progress
from streams.tasks import cancel_and_wait

__all__ = [
    "INBOUND_OUTCOMES",
    "RECEIPT_OUTCOMES",
    "SUPPRESSION_REASONS",
    "LagSampler",
    "Metrics",
    "check_port",
    "serve",
    "shutdown",
]

log = logging.getLogger(__name__)

#: Every inbound record ends as exactly one of these (ingest's guarantee).
INBOUND_OUTCOMES = ("accepted", "duplicate", "rejected")
#: Why the fan-out did not emit a task to a targeted recipient.
SUPPRESSION_REASONS = ("duplicate", "cap", "opted_out", "expired", "cancelled")
#: What a delivery receipt reports.
RECEIPT_OUTCOMES = ("delivered", "failed")

#: ``reason`` label of an inbound record that was not rejected.
NO_REASON = "none"

_ALERT_STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
_FANOUT_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_FIRST_TASK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Decision → first task: the national-alert SLO (rule LoaFirstTaskSloMissed) is a bucket bound.
_DECISION_FIRST_SECONDS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300)
_DECISION_LAST_SECONDS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# ``_created`` series double the exposition (a gauge per counter and histogram child) and no
# rule or panel reads them; Prometheus' ``rate`` handles restarts without them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def build_info(registry: CollectorRegistry, **extra: str) -> None:
    """``loa_build_info{version, python, aiokafka, faust, ...} 1`` plus the process, platform
    and GC collectors (CPU, memory, open files, start time, Python version) on ``registry``."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from streams import __version__

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    info = Info("loa_build", "Loa build and runtime versions (value 1).", registry=registry)
    info.info(
        {
            "version": __version__,
            "python": platform.python_version(),
            "aiokafka": dist("aiokafka"),
            "faust": dist("faust-streaming"),
            **extra,
        }
    )
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class Metrics:
    """Every Loa metric, registered on ``registry``; the methods are what the stages call."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Declare every metric. Why this long: one declaration per metric with its help text
        (what an SRE reads in ``/metrics`` and docs/operations.md lists), on one registry so a
        worker serves them all from one endpoint."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.inbound_records = Counter(
            "loa_inbound_records_total",
            "Inbound records by ingest outcome (accepted, duplicate, rejected) and reason code.",
            ["outcome", "reason"],
            registry=r,
        )
        self.alerts_accepted = Counter(
            "loa_alerts_accepted_total",
            "Accepted alerts by Loa priority and CAP status.",
            ["priority", "status"],
            registry=r,
        )
        self.recipients_targeted = Counter(
            "loa_recipients_targeted_total",
            "Recipients selected by fan-out orders (before suppression), by priority.",
            ["priority"],
            registry=r,
        )
        self.tasks_emitted = Counter(
            "loa_tasks_emitted_total",
            "Send tasks handed to the producer, by channel and priority.",
            ["channel", "priority"],
            registry=r,
        )
        self.tasks_suppressed = Counter(
            "loa_tasks_suppressed_total",
            "Targeted recipients not sent a task, by reason "
            "(duplicate, cap, opted_out, expired, cancelled) and priority.",
            ["reason", "priority"],
            registry=r,
        )
        self.throttle_wait = Counter(
            "loa_throttle_wait_seconds_total",
            "Seconds the fan-out waited for a channel's rate limit.",
            ["channel"],
            registry=r,
        )
        self.fanout_duration = Histogram(
            "loa_fanout_duration_seconds",
            "Wall time of one fan-out order, from pick-up to its last task acknowledged.",
            ["priority"],
            buckets=_FANOUT_SECONDS,
            registry=r,
        )
        self.time_to_first_task = Histogram(
            "loa_fanout_time_to_first_task_seconds",
            "From the fan-out order being written (else started) to its first task produced.",
            ["priority"],
            buckets=_FIRST_TASK_SECONDS,
            registry=r,
        )
        self.decision_to_first_task = Histogram(
            "loa_decision_to_first_task_seconds",
            "From ingest's decision to the first task of an order partition, by priority.",
            ["priority"],
            buckets=_DECISION_FIRST_SECONDS,
            registry=r,
        )
        self.decision_to_last_task = Histogram(
            "loa_decision_to_last_task_seconds",
            "From ingest's decision to the last task of an order partition (its fan-out "
            "done), by priority.",
            ["priority"],
            buckets=_DECISION_LAST_SECONDS,
            registry=r,
        )
        self.orders_in_progress = Gauge(
            "loa_fanout_orders_in_progress",
            "Fan-out orders this worker is running now.",
            ["priority"],
            registry=r,
        )
        self.orders_failed = Counter(
            "loa_fanout_orders_failed_total",
            "Fan-out orders that failed with a non-retriable error (sent to rejections).",
            ["priority"],
            registry=r,
        )
        self.directory_subscribers = Gauge(
            "loa_directory_subscribers",
            "Subscribers in the compacted directory index of an owned partition.",
            ["partition"],
            registry=r,
        )
        self.directory_pending = Gauge(
            "loa_directory_pending_changes",
            "Directory changes applied but not yet merged into the index of a partition.",
            ["partition"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "loa_consumer_lag_records",
            "Records not yet processed on Loa's input topics (end offset minus committed "
            "offset of the group; the directory: minus the replay position).",
            ["topic"],
            registry=r,
        )
        self.receipts = Counter(
            "loa_receipts_total",
            "Delivery receipts folded, by channel and outcome (delivered, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.restore_failures = Counter(
            "loa_partition_restore_failures_total",
            "Failed restores of an owned partition's state (each is retried with backoff).",
            ["component"],
            registry=r,
        )
        self.hanging_aborted = Counter(
            "loa_hanging_transactions_aborted_total",
            "Partitions where a new owner aborted records its predecessor left with no "
            "transaction marker (Kafka skipped the markers, e.g. a broker stopped with no other "
            "replica); see the runbook.",
            ["component"],
            registry=r,
        )
        self.receipts_invalid = Counter(
            "loa_receipts_invalid_total",
            "Receipt records that could not be read (skipped, logged).",
            registry=r,
        )
        build_info(r)
        self._initialize()
        self._partitions: set[str] = set()

    def _initialize(self) -> None:
        """Export every bounded label set at zero, so rates and alert rules see the series."""
        self.inbound_records.labels("accepted", NO_REASON)
        self.inbound_records.labels("duplicate", NO_REASON)
        for code in RejectionCode:
            self.inbound_records.labels("rejected", code.value)
        for priority in Priority:
            p = priority.value
            self.recipients_targeted.labels(p)
            self.orders_in_progress.labels(p)
            self.orders_failed.labels(p)
            for status in _ALERT_STATUSES:
                self.alerts_accepted.labels(p, status)
            for channel in CHANNELS:
                self.tasks_emitted.labels(channel, p)
            for reason in SUPPRESSION_REASONS:
                self.tasks_suppressed.labels(reason, p)
        for channel in CHANNELS:
            self.throttle_wait.labels(channel)
            for outcome in RECEIPT_OUTCOMES:
                self.receipts.labels(channel, outcome)

    # -- ingest ---------------------------------------------------------------------------------

    def inbound(self, outcome: str, reason: str = NO_REASON) -> None:
        """One inbound record decided: ``outcome`` in :data:`INBOUND_OUTCOMES`."""
        self.inbound_records.labels(outcome, reason or NO_REASON).inc()

    def accepted(self, priority: str, status: str) -> None:
        """One accepted alert (also count it with :meth:`inbound`)."""
        self.alerts_accepted.labels(priority, status).inc()

    # -- fan-out --------------------------------------------------------------------------------

    def targeted(self, priority: str, n: int) -> None:
        if n:
            self.recipients_targeted.labels(priority).inc(n)

    def emitted(self, priority: str, channels: npt.NDArray[np.uint8]) -> None:
        """A chunk of tasks produced; ``channels`` is the chunk's channel column (codes)."""
        if not channels.shape[0]:
            return
        counts = np.bincount(channels, minlength=len(CHANNELS))
        for code, n in enumerate(counts.tolist()):
            if n:
                self.tasks_emitted.labels(_channel(code), priority).inc(n)

    def suppressed(self, reason: str, n: int, priority: str = Priority.ROUTINE.value) -> None:
        """``n`` targeted recipients got no task, for ``reason`` in :data:`SUPPRESSION_REASONS`."""
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(f"unknown suppression reason {reason!r}")
        if n > 0:
            self.tasks_suppressed.labels(reason, priority).inc(n)

    def throttled(self, channel: str, seconds: float) -> None:
        """The fan-out waited ``seconds`` for ``channel``'s rate limit."""
        if seconds > 0:
            self.throttle_wait.labels(channel).inc(seconds)

    def order_finished(self, done: Progress, *, written_at: float | None = None) -> None:
        """A fan-out order completed (or stopped).

        Time to first task counts from ``written_at`` (Unix seconds the order was written),
        else from the order's start. An order stopped by a Cancel or its expiry counts the
        recipients it did not reach as suppressed for that reason.
        """
        end = done.finished_at or done.started_at
        self.fanout_duration.labels(done.priority).observe(max(end - done.started_at, 0.0))
        if done.first_task_at is not None:
            first = done.first_task_at - (written_at or done.started_at)
            self.time_to_first_task.labels(done.priority).observe(max(first, 0.0))
        if written_at is not None and done.first_task_at is not None:
            last = (done.finished_at or done.first_task_at) - written_at
            self.decision_to_last_task.labels(done.priority).observe(max(last, 0.0))
        if done.stopped in SUPPRESSION_REASONS:
            rest = done.targeted - done.emitted - sum(done.suppressed.values())
            self.suppressed(done.stopped, rest, done.priority)

    def first_task(self, priority: str, written_at: float | None, at: float) -> None:
        """An order partition's first chunk of tasks committed ``at`` (Unix seconds): decision
        → first task, observed now rather than when the order finishes, so the SLO rule
        (LoaFirstTaskSloMissed) fires during a slow national fan-out, not after it."""
        if written_at is not None:
            self.decision_to_first_task.labels(priority).observe(max(at - written_at, 0.0))

    # -- receipts -------------------------------------------------------------------------------

    def receipts_folded(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Receipts of one batch: ``{(channel, outcome): n}``."""
        for (channel, outcome), n in counts.items():
            if n:
                self.receipts.labels(channel, outcome).inc(n)

    # -- sampled gauges -------------------------------------------------------------------------

    def directory_sizes(self, sizes: Mapping[int, tuple[int, int]]) -> None:
        """``{partition: (subscribers, pending changes)}`` of the owned partitions."""
        now = {str(p) for p in sizes}
        for gone in self._partitions - now:
            self.directory_subscribers.remove(gone)
            self.directory_pending.remove(gone)
        self._partitions = now
        for p, (subscribers, pending) in sizes.items():
            self.directory_subscribers.labels(str(p)).set(subscribers)
            self.directory_pending.labels(str(p)).set(pending)

    def lag(self, lags: Mapping[str, int]) -> None:
        """``{topic: records behind}``."""
        for topic, n in lags.items():
            self.consumer_lag.labels(topic).set(max(n, 0))


def _channel(code: int) -> str:
    return CHANNELS[code] if code < len(CHANNELS) else "unknown"


def serve(metrics: Metrics, host: str, port: int, *, readiness: Readiness | None = None) -> Any:
    """Serve ``/metrics``, ``/ready`` and ``/live`` on ``host:port`` in a daemon thread;
    returns the server (or None). See :mod:`streams.httpserver` for the endpoints.

    ``loa worker`` checks the port first (:func:`check_port`) and does not start on a busy one;
    a port taken between that check and this bind is logged and the worker goes on (alerts
    matter more than their metrics; ``LoaWorkerDown`` reports the missing endpoint).
    """
    from streams.httpserver import start_server

    if port == 0:
        log.info("metrics endpoint disabled (LOA_METRICS_PORT=0)")
        return None
    try:
        server = start_server(host, port, metrics.registry, readiness)
    except OSError as exc:
        log.error("metrics endpoint %s:%d not served: %s", host, port, exc)
        return None
    log.info("metrics on http://%s:%d/metrics, readiness on /ready", host, port)
    return server


def check_port(host: str, port: int, *, variable: str = "LOA_METRICS_PORT") -> None:
    """Refuse to start when ``host:port`` cannot be bound (another process serves it): a
    worker without its own ``/metrics``, ``/ready`` and ``/live`` would let a probe read the
    other process's answers. :class:`~streams.errors.ConfigUnusable` (exit 78) says which."""
    import socket

    from streams.errors import ConfigUnusable

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the WSGI server binds (SO_REUSEADDR): a port in TIME_WAIT is not "busy"
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigUnusable(
                f"{variable}={port}: cannot serve /metrics, /ready and /live on {host}:{port} "
                f"({exc.strerror}): another process holds the port",
                hint=f"stop that process or give this one another {variable} (0: no endpoint)",
            ) from None


def shutdown(server: Any) -> None:
    """Stop a server returned by :func:`serve` (without blocking the event loop for long)."""
    if server is None:
        return
    thread = threading.Thread(target=server.shutdown, daemon=True)
    thread.start()
    thread.join(timeout=2.0)
    server.server_close()


def sum_lag(end: Mapping[Any, int], done: Mapping[Any, int | None]) -> int:
    """Records between ``done`` (committed offset or position; missing: 0) and ``end``."""
    return sum(max(e - (done.get(tp) or 0), 0) for tp, e in end.items())


def topics_of(specs: Iterable[Any]) -> dict[str, int]:
    return {s.name: s.num_partitions for s in specs}


#: Largest committed-to-end gap checked for markers only (a few transactions' commit markers).
_MARKER_GAP = 16
#: How long one sample may fetch to tell trailing markers from records.
_MARKER_WAIT_S = 2.0


class LagSampler:
    """The worker's periodic task: consumer lag of Loa's input topics and directory gauges.

    Lag of a topic is summed over all its partitions (end offset minus the group's committed
    offset): every worker reports the same group-wide figure, so aggregate with ``max by
    (topic)``. The directory has no group (each worker replays its own partitions): its lag is
    this worker's replay position, so aggregate it with ``sum``.
    """

    def __init__(
        self,
        settings: Any,
        metrics: Metrics,
        groups: Mapping[str, str],
        directory_stats: Callable[[], Awaitable[Mapping[int, tuple[int, int, int]]]] | None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.groups = dict(groups)  # topic -> consumer group
        self.directory_stats = directory_stats
        self._task: asyncio.Task[None] | None = None
        self._admin: Any = None
        self._consumer: Any = None

    async def start(self) -> None:
        from streams.kafkaio.clients import make_admin, make_consumer

        self._admin = make_admin(self.settings)
        await self._admin.start()
        # read_committed: end offsets are then the last stable offset (an open transaction is
        # not lag), and a fetch past trailing commit markers returns nothing (_past_markers)
        self._consumer = make_consumer(
            self.settings, client_id=f"{self.settings.app_id}-lag", isolation_level="read_committed"
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="loa-lag")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sampling hiccup must never take the worker down
                log.warning("metrics sampling failed: %s", exc)
            await asyncio.sleep(self.settings.metrics_interval_s)

    async def _past_markers(
        self, end: Mapping[Any, int], done: Mapping[Any, int]
    ) -> dict[Any, int]:
        """``done`` moved past trailing transaction markers: a group that consumed every record
        of a transactional topic commits the offset of the commit marker after them, one short
        of the end, so without this the lag of such a topic never returns to 0. A partition
        whose gap holds no record a read_committed consumer returns counts as caught up.

        The first fetch after an assignment may not have completed when ``getmany`` returns
        (the position then still stands at the seek): fetch until each partition either
        returns a record (real lag) or moves to its end, within :data:`_MARKER_WAIT_S`. One
        ``getmany`` alone left a marker counted as lag in every sample (issue 20: the receipts
        topic stayed at 8, one per partition)."""
        gaps = [tp for tp, e in end.items() if 0 < e - (done.get(tp) or 0) <= _MARKER_GAP]
        moved = dict(done)
        if not gaps:
            return moved
        self._consumer.assign(gaps)
        for tp in gaps:
            self._consumer.seek(tp, done.get(tp) or 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _MARKER_WAIT_S
        pending = set(gaps)
        while pending and loop.time() < deadline:
            batch = await self._consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                if batch.get(tp):  # a committed record past ``done``: the lag is real
                    pending.discard(tp)
                elif await self._consumer.position(tp) >= end[tp]:
                    moved[tp] = end[tp]
                    pending.discard(tp)
        return moved

    async def sample(self) -> None:
        from aiokafka import TopicPartition

        from streams.kafkaio.clients import topic_specs

        partitions = topics_of(topic_specs(self.settings))
        lags: dict[str, int] = {}
        for group in sorted(set(self.groups.values())):
            committed = await self._admin.list_consumer_group_offsets(group)
            done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
            for topic, g in self.groups.items():
                if g != group:
                    continue
                tps = [TopicPartition(topic, p) for p in range(partitions[topic])]
                end = await self._consumer.end_offsets(tps)
                lags[topic] = sum_lag(end, await self._past_markers(end, done))
        if self.directory_stats is not None:
            stats = await self.directory_stats()
            self.metrics.directory_sizes({p: (s[0], s[1]) for p, s in stats.items()})
            lags[self.settings.directory_topic] = sum(s[2] for s in stats.values())
        self.metrics.lag(lags)
