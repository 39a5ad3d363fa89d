"""One retry policy for every in-place retry of a worker: back-off with jitter, a limit (attempts
or a deadline), and which failures are worth another try, decided by the error's type.

Where it sits: under every loop that tries again in place: partition restores
(:mod:`streams.kafkaio.ownership`), fan-out chunks (:mod:`streams.fanout.scheduler`), ingest's state
and writes (:mod:`streams.ingest.agent`), the receipts fold (:mod:`streams.receipts.fold`) and the
fetch loops of the directory (:mod:`streams.directory.service`) and the compacted replicas
(:mod:`streams.kafkaio.replica`). ``tests/unit/test_layout.py`` fails on a retry loop written by
hand anywhere else in ``streams/``. Not the delivery workers' durable retries: a send task is
retried by copying it to a retry-tier topic, never by waiting in place
(:mod:`streams.delivery.retry`); its back-off is :func:`backoff_s` with ``jitter=1`` (full
jitter), so both can share it.

Why not in ``kafkaio/``: the operations retried are not all Kafka calls (a directory replay that
stalls, a restore that reads a snapshot file, a bug in an owner), and the classification covers
Loa's own errors as much as Kafka's.

Classification (:func:`classify`), by type only, never by a message or a class name:

* a :class:`~streams.errors.LoaError`: its ``retriable`` flag (``RetriableError`` is transient,
  ``PoisonError`` poison);
* any aiokafka ``KafkaError``: transient. A Kafka error is the cluster's state (a broker away,
  a rebalance, a fenced producer, an ACL not granted yet), never the fault of the record being
  worked on. aiokafka's own ``retriable`` flag is not used: it marks ``KafkaTimeoutError``,
  ``BrokerNotAvailableError`` and ``RebalanceInProgressError`` not retriable;
* ``OSError`` (connections, disks) and ``TimeoutError``: transient;
* anything else (``ValueError``, ``KeyError``...): poison, a bug met this input or the input
  is bad. A caller that must never give up (a restore) still retries it, logged with its
  traceback; one that can end the work (a fan-out order) ends it.

Guarantee: an operation is attempted again only after its back-off, never after it was
cancelled (``CancelledError`` always propagates), and never once the caller says the work is
no longer its own (:meth:`RetryPolicy.run_while`). When the policy gives up, the caller gets the
last error itself.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeVar

from aiokafka.errors import KafkaError

from streams.errors import LoaError

__all__ = [
    "ABANDONED",
    "Abandoned",
    "Failed",
    "Failure",
    "RetryPolicy",
    "Then",
    "backoff_s",
    "classify",
    "transient",
]

T = TypeVar("T")


class Failure(StrEnum):
    """What a failed attempt says about the work (:func:`classify`)."""

    #: The world is not ready (broker, network, a replay): the same work may succeed later.
    TRANSIENT = "transient"
    #: The work itself cannot succeed (a bad input, or a bug it meets).
    POISON = "poison"


def classify(exc: BaseException) -> Failure:
    """Whether ``exc`` is transient or poison, by its type (see the module docstring)."""
    if isinstance(exc, LoaError):
        return Failure.TRANSIENT if exc.retriable else Failure.POISON
    if isinstance(exc, KafkaError | OSError | TimeoutError):
        return Failure.TRANSIENT
    return Failure.POISON


def transient(exc: BaseException) -> bool:
    """Whether a retry can outlive ``exc`` (:func:`classify` says transient)."""
    return classify(exc) is Failure.TRANSIENT


def backoff_s(
    attempt: int, *, base_s: float, cap_s: float, rand: float, jitter: float = 1.0
) -> float:
    """The wait after failed attempt ``attempt`` (1-based), exponential with jitter.

    The ceiling is ``min(cap_s, base_s * 2^(attempt-1))``; the share ``jitter`` of it is random
    (``rand`` uniform in [0, 1)): ``jitter=1`` is full jitter (``rand * ceiling``, the delivery
    workers' choice), ``0.5`` waits at least half the ceiling, ``0`` is no jitter. Jitter spreads
    the retries of the many partitions and workers one outage fails at once (AWS Architecture
    Blog, "Exponential Backoff And Jitter"). Pure: no clock, no random source of its own.
    """
    exponent = min(max(attempt - 1, 0), 62)  # 2**62 s is past any cap; avoids float overflow
    ceiling = min(cap_s, base_s * float(2**exponent))
    return ceiling * (1.0 - jitter + jitter * rand)


class Then(StrEnum):
    """What a failure hook (``on_failure``) tells the policy to do after a failed attempt."""

    #: Try again after the back-off (also what a hook returning None means).
    RETRY = "retry"
    #: Try again without waiting: the next attempt does other work (ends the order as failed).
    AT_ONCE = "at_once"
    #: Stop quietly: the work is no longer this worker's (its partition moved on).
    ABANDON = "abandon"
    #: Give up: the error goes to the caller.
    RAISE = "raise"


@dataclass(frozen=True, slots=True)
class Failed:
    """One failed attempt, as a failure hook sees it."""

    #: 1 for the first attempt.
    attempt: int
    error: Exception
    failure: Failure
    #: The back-off before the next attempt.
    delay_s: float


class Abandoned(enum.Enum):
    """The type of :data:`ABANDONED`."""

    ABANDONED = "abandoned"


#: What :meth:`RetryPolicy.run_while` returns when the work stopped being the caller's.
ABANDONED: Literal[Abandoned.ABANDONED] = Abandoned.ABANDONED

Hook = Callable[[Failed], Awaitable[Then | None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and for how long to try one operation again.

    The default: 0.5 s doubling to 5 s, half of each wait random, no limit (until it succeeds,
    the caller stops wanting it, or it is cancelled).
    """

    #: Back-off base and cap (:func:`backoff_s`).
    base_s: float = 0.5
    cap_s: float = 5.0
    #: The random share of each wait (0: none, 1: full jitter). Half by default: a broker that
    #: is away is not hammered by retries that come at once, yet the waits still spread.
    jitter: float = 0.5
    #: Attempts in all before the last error is raised (None: no limit).
    attempts: int | None = None
    #: Seconds after the first attempt's start past which no attempt starts (None: no limit).
    deadline_s: float | None = None
    #: Whether a poison failure is tried again (True: it is logged with its traceback and
    #: retried, for work that must never be dropped; False: it is raised at once).
    retry_poison: bool = True

    def delay_s(self, attempt: int, rand: float) -> float:
        """The back-off after failed attempt ``attempt`` (1-based) for a ``rand`` in [0, 1)."""
        return backoff_s(
            attempt, base_s=self.base_s, cap_s=self.cap_s, rand=rand, jitter=self.jitter
        )

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        what: str,
        log: logging.Logger,
        on_failure: Hook | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """``op()``'s result, retried under this policy; raises the last error on giving up.

        A hook that answers :attr:`Then.ABANDON` is an error here (use :meth:`run_while`).
        """
        result = await self.run_while(
            op,
            lambda: True,
            what=what,
            log=log,
            on_failure=on_failure,
            rand=rand,
            sleep=sleep,
            clock=clock,
        )
        if result is ABANDONED:
            raise RuntimeError(f"{what}: abandoned by its failure hook; use run_while")
        return result

    async def run_while(
        self,
        op: Callable[[], Awaitable[T]],
        still_wanted: Callable[[], bool],
        *,
        what: str,
        log: logging.Logger,
        on_failure: Hook | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T | Literal[Abandoned.ABANDONED]:
        """``op()``'s result, retried under this policy while ``still_wanted()`` (asked before
        every attempt); :data:`ABANDONED` once it is not, or when the hook says so.

        Every failure goes to ``on_failure`` first (metrics, readiness, a reset of the work);
        then, if the attempt is to be retried, one line is logged with ``what``: a warning for
        a transient error, the traceback for a poison one.
        """
        first = clock()
        attempt = 0
        while still_wanted():
            attempt += 1
            try:
                return await op()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = Failed(attempt, exc, classify(exc), self.delay_s(attempt, rand()))
                then = (await on_failure(failed) if on_failure is not None else None) or Then.RETRY
                if then is Then.ABANDON:
                    return ABANDONED
                if then is Then.RAISE or self._gives_up(failed, clock() - first):
                    raise
                if then is Then.AT_ONCE:
                    continue
                _log_retry(log, what, failed)
                await sleep(failed.delay_s)
        return ABANDONED

    def _gives_up(self, failed: Failed, elapsed_s: float) -> bool:
        if failed.failure is Failure.POISON and not self.retry_poison:
            return True
        if self.attempts is not None and failed.attempt >= self.attempts:
            return True
        return self.deadline_s is not None and elapsed_s + failed.delay_s > self.deadline_s


def _log_retry(log: logging.Logger, what: str, failed: Failed) -> None:
    if failed.failure is Failure.TRANSIENT:  # a broker away, a stall: no bug, no traceback
        log.warning(
            "%s failed (attempt %d): %r; retry in %.1f s",
            what,
            failed.attempt,
            failed.error,
            failed.delay_s,
        )
    else:
        log.error(
            "%s failed (attempt %d); retry in %.1f s",
            what,
            failed.attempt,
            failed.delay_s,
            exc_info=failed.error,
        )
