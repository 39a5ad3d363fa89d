"""The fan-out's order queue (pure): which order goes next, when one is superseded, and how its
progress record changes as chunks commit.

Where it sits: inside the emitter (:mod:`streams.fanout.scheduler`), which owns one
:class:`PartitionQueue` per order partition it holds, asks :func:`next_order` for the chunk to
emit next, and writes what the transitions below return. Nothing here does I/O or reads a clock:
every time is passed in, so the unit tests pin when each one is taken.

* **Priority.** The most urgent order first (extreme, severe, routine; then the oldest).
* **Versions.** A later version of a lineage waits until the earlier ones on its partition are
  finished (they stop at once: ``superseded``), so its plan sees their final cursors.
* **Progress.** :func:`started` when an order is taken, :func:`planned` once its audience is
  selected, :func:`chunk_committed` per committed chunk, :func:`failed` for poison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from streams.directory.index import Selection
from streams.fanout.encode import TaskEncoder
from streams.fanout.plan import PastOrder
from streams.records import FanoutOrder, Priority, Progress

__all__ = [
    "OrderKey",
    "PartitionQueue",
    "Running",
    "chunk_committed",
    "failed",
    "next_order",
    "order_key",
    "past",
    "planned",
    "started",
]

_RANK = {p: i for i, p in enumerate(Priority)}

OrderKey = tuple[str, int, int]


def order_key(order: FanoutOrder) -> OrderKey:
    """``(alert_id, version, partition)``: one order of one directory partition."""
    return (order.alert_id, order.version, order.partition)


@dataclass(slots=True)
class Running:
    """An order being fanned out: its committed progress and its selected audience."""

    order: FanoutOrder
    seq: int
    progress: Progress
    #: Last recipient id committed (-1: none yet). Ids are unsigned, so -1 sorts first.
    cursor: int = -1
    audience: Selection | None = None
    #: Task kind code of each audience member (``encode.KINDS``), parallel to ``audience``.
    kinds: npt.NDArray[np.uint8] | None = None
    #: Whether this worker counts it in ``loa_fanout_orders_in_progress``.
    counted: bool = False
    #: The order's task encoder: its record templates are built once, not once per chunk.
    encoder: TaskEncoder | None = None

    @property
    def rank(self) -> tuple[int, int]:
        return (_RANK[self.order.priority], self.seq)


@dataclass(slots=True)
class PartitionQueue:
    """The orders of one partition: running, finished, and the history plans read."""

    orders: dict[OrderKey, Running] = field(default_factory=dict)
    finished: set[OrderKey] = field(default_factory=set)
    #: Every order seen on this partition with its committed cursor: lineage dedup and caps.
    history: dict[OrderKey, PastOrder] = field(default_factory=dict)
    #: A chunk of this partition is being emitted (one at a time per partition).
    busy: bool = False

    def knows(self, order: FanoutOrder) -> bool:
        key = order_key(order)
        return key in self.orders or key in self.finished

    def add(self, order: FanoutOrder, committed: Progress | None, *, seq: int, now: float) -> None:
        """Queue ``order``, resuming after ``committed`` (its last committed progress) if any."""
        progress = committed or started(order, now)
        cursor = committed.cursor if committed is not None and committed.cursor is not None else -1
        self.orders[order_key(order)] = Running(order, seq, progress, cursor)
        self.history[order_key(order)] = past(order, progress)

    def add_finished(self, order: FanoutOrder, committed: Progress) -> None:
        """Remember a finished order (restored from its ``done`` progress record)."""
        self.finished.add(order_key(order))
        self.history[order_key(order)] = past(order, committed)

    def committed(self, running: Running, progress: Progress) -> None:
        """Record a committed progress record of ``running``; a ``done`` one finishes it."""
        running.progress = progress
        running.cursor = progress.cursor if progress.cursor is not None else -1
        key = order_key(running.order)
        self.history[key] = past(running.order, progress)
        if progress.done:
            self.orders.pop(key, None)
            self.finished.add(key)

    def superseded(self, order: FanoutOrder) -> str | None:
        """``"superseded"`` when a later version of the lineage is waiting on this partition:
        what this order has not sent yet, the later one sends, in its newer words."""
        for key in self.orders:
            if key[0] == order.alert_id and key[1] > order.version:
                return "superseded"
        return None

    def next_ready(self) -> Running | None:
        """The most urgent order whose earlier versions are finished, if any."""
        if self.busy or not self.orders:
            return None
        oldest: dict[str, int] = {}
        for r in self.orders.values():
            a = r.order.alert_id
            oldest[a] = min(oldest.get(a, r.order.version), r.order.version)
        ready = [r for r in self.orders.values() if r.order.version == oldest[r.order.alert_id]]
        return min(ready, key=lambda r: r.rank)


def next_order(queues: Mapping[int, PartitionQueue]) -> tuple[int, Running] | None:
    """The partition and order whose chunk goes next: the most urgent over all partitions."""
    best: tuple[int, Running] | None = None
    for p, queue in queues.items():
        candidate = queue.next_ready()
        if candidate is not None and (best is None or candidate.rank < best[1].rank):
            best = (p, candidate)
    return best


# ------------------------------------------------------------------------- progress


def started(order: FanoutOrder, now: float) -> Progress:
    """The progress of an order taken at ``now``: nothing targeted or emitted yet."""
    return Progress(
        alert_id=order.alert_id,
        version=order.version,
        partition=order.partition,
        priority=order.priority.value,
        targeted=0,
        emitted=0,
        done=False,
        started_at=now,
    )


def planned(progress: Progress, *, targeted: int, suppressed: dict[str, int]) -> Progress:
    """The audience is selected: ``targeted`` includes those left out (``suppressed``). A
    resumed order keeps the figures of its first plan."""
    if progress.targeted:
        return progress
    return replace(progress, targeted=targeted, suppressed=suppressed)


def chunk_committed(
    progress: Progress,
    *,
    emitted: int,
    cursor: int | None,
    done: bool,
    stopped: str | None,
    at: float,
) -> Progress:
    """The progress after a chunk of ``emitted`` tasks up to ``cursor`` (``done``: the last one,
    ``stopped``: why it ended early). ``at`` is when the chunk's tasks are committed: the first
    task time of the first chunk that emits, the finish time of the last."""
    return replace(
        progress,
        emitted=progress.emitted + emitted,
        cursor=cursor if emitted else progress.cursor,
        first_task_at=progress.first_task_at or (at if emitted else None),
        done=done,
        stopped=stopped,
        finished_at=at if done else None,
    )


def failed(progress: Progress, at: float) -> Progress:
    """An order that cannot be carried out ends ``failed`` with what it emitted."""
    return replace(progress, done=True, stopped="failed", finished_at=at)


def past(order: FanoutOrder, progress: Progress) -> PastOrder:
    """How far ``order`` got, as the plans of later orders read it."""
    cursor = progress.cursor if progress.cursor is not None else -1
    return PastOrder(order, cursor, progress.started_at)
