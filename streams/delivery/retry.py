"""Durable retries (pure): when a failed send is tried again, on which tier, when it falls back
to the recipient's next channel and when it stops. No I/O, no clock reads: ``now`` and the
jitter's random number are passed in.

Where it sits: the delivery worker (:mod:`streams.delivery.worker`) calls :func:`settle` for
every provider answer and writes what it returns in one Kafka transaction with the consumed
offset: the receipt (``delivered``, ``failed`` or ``retrying``), the task's retry copy on a
retry-tier topic, and a fallback task for the recipient's next channel.

The pattern is Uber's *reliable reprocessing* with retry topics and delay tiers (Uber
Engineering, "Building Reliable Reprocessing and Dead Letter Queues with Apache Kafka", 2018),
which Spring Kafka ships as *non-blocking retries* (``@RetryableTopic``): a failed task is not
retried in place, where it would block the partition behind it, but copied to
``<prefix>.sends.retry.<priority>.<delay>``; the worker reads each tier, holds a copy until its
``due_at`` and tries again. Two differences from the textbook version: the copy carries its own
due time (exponential back-off with full jitter, or the provider's Retry-After), the tier only
bounds how long copies in one topic wait; and there is no dead-letter topic: a task stops only
when the alert is no longer in force (its ``expires``, or the per-priority limit
``LOA_DELIVERY_RETRY_LIMIT_S`` after the first attempt), as ``failed`` with reason ``expired``.

Fallback: a permanent refusal (a 4xx other than 408/429) moves the recipient to their next
channel at once; a task that keeps failing moves once ``LOA_DELIVERY_FALLBACK_AFTER_S`` of its
priority passed since its first attempt (Extreme: seconds). The first channel then stops
(``failed`` with ``fallback``) unless ``LOA_DELIVERY_KEEP_TRYING_FIRST`` says to keep trying.

Guarantee: a retry copy keeps the task's idempotency key, so every attempt of one task reaches
the provider with the same key; attempts of one task are at most one per back-off interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streams.delivery.policy import Outcome, fallback_task, receipt
from streams.settings.model import Settings

__all__ = [
    "RETRY_FIELDS",
    "RetryPolicy",
    "Settled",
    "deadline",
    "expired",
    "full_jitter_s",
    "plain_task",
    "settle",
    "settled_receipt",
    "tier_for",
]

#: Fields a retry copy adds to a send task (``schemas/send_task.schema.json``).
RETRY_FIELDS = ("attempt", "first_attempt_at", "due_at", "fell_back")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry settings of one delivery worker."""

    #: Delays of the retry tiers, ascending (``LOA_DELIVERY_RETRY_TIERS_S``).
    tiers_s: tuple[float, ...] = (1.0, 10.0, 60.0, 300.0)
    #: Back-off base and cap (``LOA_DELIVERY_BACKOFF_BASE_S``/``_CAP_S``).
    base_s: float = 1.0
    cap_s: float = 300.0
    #: Per priority: retries stop this long after the first attempt (``..._RETRY_LIMIT_S``).
    limit_s: Mapping[str, float] | None = None
    #: Per priority: a failing task also goes to the next channel after this (``..._AFTER_S``).
    fallback_after_s: Mapping[str, float] | None = None
    keep_trying_first: bool = False
    max_retry_after_s: float = 300.0
    #: Calls per task before it fails for good (None: until the alert expires).
    max_attempts: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, max_attempts: int | None = None) -> RetryPolicy:
        return cls(
            tiers_s=settings.retry_tiers,
            base_s=settings.delivery_backoff_base_s,
            cap_s=settings.delivery_backoff_cap_s,
            limit_s=settings.per_priority_s("delivery_retry_limit_s"),
            fallback_after_s=settings.per_priority_s("delivery_fallback_after_s"),
            keep_trying_first=settings.delivery_keep_trying_first,
            max_retry_after_s=settings.delivery_max_retry_after_s,
            max_attempts=max_attempts,
        )

    def limit(self, priority: str) -> float:
        return math.inf if self.limit_s is None else self.limit_s[priority]

    def fallback_after(self, priority: str) -> float:
        return 0.0 if self.fallback_after_s is None else self.fallback_after_s[priority]


@dataclass(frozen=True, slots=True)
class Settled:
    """What one provider answer (or a call not made: open circuit, Retry-After) comes to."""

    outcome: Literal["delivered", "failed", "retrying"]
    reason: str | None = None
    #: The retry copy to write on the tier :attr:`tier_s` (``retrying`` only).
    retry: dict[str, Any] | None = None
    tier_s: float | None = None
    #: A task for the recipient's next channel, written with this receipt.
    fallback: dict[str, Any] | None = None
    #: Calls made for this task so far, and when the next one is due (``retrying``).
    attempt: int = 0
    next_attempt_at: float | None = None


def full_jitter_s(attempt: int, *, base_s: float, cap_s: float, rand: float) -> float:
    """Back-off before attempt ``attempt + 1`` with full jitter: ``rand`` (uniform in [0, 1))
    times ``min(cap, base * 2^(attempt-1))`` (AWS Architecture Blog, "Exponential Backoff And
    Jitter": spreads the retries of an outage's many failures instead of synchronising them)."""
    exponent = min(max(attempt - 1, 0), 62)  # 2**62 s is past any cap; avoids float overflow
    return rand * min(cap_s, base_s * float(2**exponent))


def tier_for(wait_s: float, tiers_s: tuple[float, ...]) -> float:
    """The shortest tier at least ``wait_s`` long (the longest when none is)."""
    for tier in tiers_s:
        if wait_s <= tier:
            return tier
    return tiers_s[-1]


def plain_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """``task`` without the fields of a retry copy (what a fallback task starts from)."""
    return {k: v for k, v in task.items() if k not in RETRY_FIELDS}


def deadline(task: Mapping[str, Any], policy: RetryPolicy, now: float) -> float:
    """When the task stops being worth a call: the alert's ``expires`` or the priority's limit
    after the first attempt (``now`` for a task never tried), whichever comes first."""
    first = float(task.get("first_attempt_at", now))
    end = first + policy.limit(str(task["priority"]))
    expires = task.get("expires")
    return end if expires is None else min(end, float(expires))


def expired(task: Mapping[str, Any], policy: RetryPolicy, now: float) -> bool:
    """True when ``task`` must not be sent any more (checked before every call)."""
    return now >= deadline(task, policy, now)


def settle(
    task: Mapping[str, Any],
    outcome: Outcome,
    *,
    now: float,
    rand: float,
    policy: RetryPolicy,
    floor_s: float = 0.0,
    called: bool = True,
) -> Settled:
    """What to write after ``outcome`` of one attempt of ``task`` at ``now``.

    ``floor_s``: wait at least this long (an open circuit's remaining cool-down).
    ``called``: False when no call was made (an open circuit, a Retry-After not over): the
    attempt is not counted against ``max_attempts``.
    """
    if outcome.status == "delivered":
        return Settled("delivered", attempt=int(task.get("attempt", 0)) + 1)
    clean = plain_task(task)
    moved = None if task.get("fell_back") else fallback_task(clean)
    attempt = int(task.get("attempt", 0)) + (1 if called else 0)
    if outcome.status == "failed":  # a permanent refusal: the next channel at once
        return Settled("failed", outcome.reason, fallback=moved, attempt=attempt)
    first = float(task.get("first_attempt_at", now))
    end = deadline(task, policy, now)
    if now >= end:
        return Settled("failed", "expired", attempt=attempt)
    if called and policy.max_attempts is not None and attempt >= policy.max_attempts:
        reason = outcome.reason or "retries_exhausted"
        return Settled("failed", reason, fallback=moved, attempt=attempt)
    if outcome.after_s is not None:  # the provider said when
        wait = min(outcome.after_s, policy.max_retry_after_s)
    else:
        wait = full_jitter_s(attempt, base_s=policy.base_s, cap_s=policy.cap_s, rand=rand)
    wait = max(wait, floor_s)
    fell_back = task.get("fell_back")
    fallback_at = first + policy.fallback_after(str(task["priority"]))
    if moved is not None and now >= fallback_at:
        if not policy.keep_trying_first:
            return Settled("failed", outcome.reason, fallback=moved, attempt=attempt)
        fell_back = moved["channel"]
    elif moved is not None:  # the next attempt comes no later than the fallback budget
        wait = min(wait, fallback_at - now)
        moved = None
    due = min(now + wait, end)
    copy = {**clean, "attempt": max(attempt, 1), "first_attempt_at": first, "due_at": due}
    if fell_back is not None:
        copy["fell_back"] = fell_back
    return Settled(
        "retrying",
        outcome.reason,
        retry=copy,
        tier_s=tier_for(due - now, policy.tiers_s),
        fallback=moved,
        attempt=max(attempt, 1),
        next_attempt_at=due,
    )


def settled_receipt(
    task: Mapping[str, Any], settled: Settled, *, worker: str, at: float
) -> dict[str, Any]:
    """The receipt of one settled attempt (``schemas/receipt.schema.json``)."""
    plain = plain_task(task)
    status: Literal["delivered", "failed"] = (
        "delivered" if settled.outcome == "delivered" else "failed"
    )
    moved = None if settled.fallback is None else str(settled.fallback["channel"])
    doc = receipt(plain, Outcome(status, settled.reason), worker=worker, at=at, fallback=moved)
    if settled.outcome == "retrying":
        doc["outcome"] = "retrying"
        doc["attempt"] = settled.attempt
        doc["next_attempt_at"] = settled.next_attempt_at
    return doc
