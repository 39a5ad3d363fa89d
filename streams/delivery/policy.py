"""Delivery policy (pure): what to do with a task, an answer, a failure. No I/O, no clock reads.

- :class:`TaskBuffer` orders fetched tasks extreme before severe before routine, so a routine
  backlog never delays an extreme task by more than the batch in flight.
- :class:`Outcome` is a provider's answer: delivered, retry (transient; ``after_s`` from a
  Retry-After) or failed (permanent, with a short reason code: a metric label).
- :func:`receipt` and :func:`fallback_task` build the records the worker writes; when a retry
  is due, how long a task keeps trying and when it falls back is :mod:`streams.delivery.retry`.

Fallback (the choice): a task that fails on its channel, whether the provider refused it (a
permanent 4xx, at once) or kept failing past its priority's fallback budget, moves to the
recipient's next channel. Someone under a typhoon warning wants the warning on any channel
they gave; a provider that is down is exactly when the next channel must carry its share.
Fallback tasks are written by delivery workers, so the fan-out's channel limits
(``loa.channels``) do not pace them; the next channel's workers pace themselves by its
provider's 429s.

Guarantee carried by the records: a fallback task keeps the lineage of the task it replaces
(``alert_id``, ``version``, ``recipient_id``) and gets the idempotency key
``<original key>/<channel>``, so each channel of a recipient is tried at most once per version.
The failed task's receipt names the channel the recipient moved to (``fallback``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.records import CHANNELS, Priority

__all__ = [
    "DeliveryStats",
    "Outcome",
    "TaskBuffer",
    "fallback_task",
    "parse_task",
    "receipt",
]

_REQUIRED = ("idempotency_key", "alert_id", "version", "kind", "priority", "recipient_id")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A provider's answer to one send."""

    status: Literal["delivered", "retry", "failed"]
    #: Short machine-readable code (``http_500``, ``timeout``, ``rate_limited``...): a label.
    reason: str | None = None
    #: For ``retry``: the provider asked to wait this long (Retry-After), else None (back-off).
    after_s: float | None = None

    @classmethod
    def delivered(cls) -> Outcome:
        return cls("delivered")

    @classmethod
    def retry(cls, reason: str, after_s: float | None = None) -> Outcome:
        return cls("retry", reason, after_s)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls("failed", reason)


@dataclass(slots=True)
class DeliveryStats:
    """What one run of the delivery worker did."""

    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    invalid: int = 0
    retries: int = 0
    fallbacks: int = 0
    skipped: int = 0  # tasks of other channels (the ``--channel`` filter)
    by_priority: dict[str, int] = field(default_factory=dict)

    @property
    def receipts(self) -> int:
        return self.delivered + self.failed

    def summary(self) -> str:
        return (
            f"{self.delivered} delivered, {self.failed} failed, {self.duplicates} duplicates"
            f" dropped, {self.invalid} invalid, {self.retries} retries, {self.fallbacks} fallbacks"
        )


def parse_task(task: Any) -> dict[str, Any]:
    """``task`` as a dict with every field a receipt names; raises ValueError if not."""
    if not isinstance(task, dict):
        raise ValueError("a send task is a JSON object")
    missing = [name for name in (*_REQUIRED, "channel") if name not in task]
    if missing:
        raise ValueError(f"send task without {', '.join(missing)}")
    task.setdefault("language", "")
    return task


def receipt(
    task: dict[str, Any],
    outcome: Outcome,
    *,
    worker: str,
    at: float,
    fallback: str | None = None,
) -> dict[str, Any]:
    """The receipt of ``task`` (``schemas/receipt.schema.json``); ``fallback``: the channel
    whose task replaced this failed one."""
    doc = {
        "alert_id": task["alert_id"],
        "version": task["version"],
        "kind": task["kind"],
        "priority": task["priority"],
        "recipient_id": task["recipient_id"],
        "channel": task["channel"],
        "idempotency_key": task["idempotency_key"],
        "outcome": "delivered" if outcome.status == "delivered" else "failed",
        "reason": None if outcome.status == "delivered" else outcome.reason,
        "at": at,
        "worker": worker,
    }
    if fallback is not None:
        doc["fallback"] = fallback
    return doc


def fallback_task(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task for the recipient's next channel after ``task`` failed for good, or None.

    ``fallback`` in a send task lists the recipient's further channels in preference order
    (the fan-out writes it from the directory).
    """
    rest = [c for c in task.get("fallback") or () if c in CHANNELS and c != task["channel"]]
    if not rest:
        return None
    key = str(task.get("lineage_key") or task["idempotency_key"])
    return {
        **task,
        "channel": rest[0],
        "fallback": rest[1:],
        "idempotency_key": f"{key}/{rest[0]}",
        "lineage_key": key,
        "fallback_of": task["channel"],
    }


class TaskBuffer:
    """Fetched tasks per priority; :meth:`take` always serves the most urgent first."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Any]] = {p.value: deque() for p in Priority}

    def add(self, priority: str, items: Iterable[Any]) -> None:
        self._queues[priority].extend(items)

    def size(self, priority: str) -> int:
        return len(self._queues[priority])

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def put_back(self, priority: str, item: Any) -> None:
        """Return an item :meth:`take` gave out to the front of its queue (its channel had no
        room for another call)."""
        self._queues[priority].appendleft(item)

    def take(self, n: int) -> list[Any]:
        """Up to ``n`` items of the most urgent non-empty priority (never mixed, so a batch of
        routine tasks is never what an extreme one waits behind once it is fetched)."""
        for queue in self._queues.values():
            if queue:
                return [queue.popleft() for _ in range(min(n, len(queue)))]
        return []
