"""Partition ownership, written once: assign → restore → serve → revoke, for every stateful part.

Where it sits: between the rebalance callbacks (Faust's ``on_partitions_assigned`` for the
workers' group, an aiokafka :class:`OwnershipListener` for the receipts group) and the parts
that hold state per partition: the directory (its index, replayed from the changes topic), the
fan-out queue (unfinished orders and cursors, plus the partition's fencing producer) and the
receipts tallies. Each part implements :class:`PartitionOwner`; the replicas of small topics
(agencies, accepted alerts, channel limits) own their one partition for the worker's lifetime
and report through :func:`restore_once`.

* **Assign.** The rebalance callback only records the wanted set (:meth:`Ownership.request`),
  so a callback never waits for a restore and never starts a task of its own. One supervised
  task (:meth:`Ownership.start`) reconciles: the latest wanted set wins, revokes go first.
* **Restore.** Each newly owned partition is restored by every owner at once (the fan-out
  fences the old owner and reloads its orders while the directory replays; its chunks wait for
  the directory on their own). A failure is logged with its traceback, counted in
  ``loa_partition_restore_failures_total{component}``, shown as ``failed`` in readiness, and
  retried (:mod:`streams.retrying`) until it succeeds or the partition is revoked.
* **Serve.** Readiness (:class:`streams.health.Readiness`) says ``serving`` once restored. A
  read path that needs a partition waits for it (:meth:`Ownership.restored`) or says it is not
  ready; it never claims one.
* **Revoke.** Owners drop the partition's state (and stop its producer) before a new owner can
  rely on it; a restore in progress for a revoked partition is abandoned.

The only way in: a part has no ``assign`` of its own, and only this module calls its
``restore`` (``tests/unit/test_layout.py`` checks both). A worker's group feeds
:meth:`Ownership.request`; a consumer that must wait for the state, :meth:`Ownership.assign`; a
tool or a test that reads partitions without a group, :func:`owning`. A part whose state turned
suspect (a batch failed half way) asks for it again with :meth:`Ownership.reset`.

Guarantee: a partition is reported ``serving`` by a component only after that component's
restore returned; nothing here commits offsets or writes to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol

from aiokafka.abc import ConsumerRebalanceListener

from streams.health import Readiness
from streams.metrics import Metrics
from streams.retrying import ABANDONED, Failed, RetryPolicy, Then
from streams.tasks import cancel_and_wait

__all__ = [
    "RESTORE_RETRY",
    "TOOL_RETRY",
    "Ownership",
    "OwnershipListener",
    "PartitionOwner",
    "owning",
    "restore_once",
]

log = logging.getLogger(__name__)

#: A worker's restores: 0.5 s doubling to 5 s, jittered, until done or revoked. A poison error
#: (a bug in an owner) is retried too: the state must come back, and readiness shows ``failed``.
RESTORE_RETRY = RetryPolicy()
#: A tool's restores (:func:`owning`): one attempt, its error goes to the caller.
TOOL_RETRY = RetryPolicy(attempts=1)


class PartitionOwner(Protocol):
    """A part of the worker that holds state per partition."""

    #: The name readiness and the restore-failure metric show (``directory``, ``fanout``...).
    component: str

    async def restore(self, partition: int) -> None:
        """Make ``partition`` ready to serve; idempotent (it is retried after a failure)."""

    async def revoke(self, partitions: set[int]) -> None:
        """Drop the state of ``partitions`` (no longer owned)."""


class Ownership:
    """Reconciles the owned partitions of a list of owners with the wanted set."""

    def __init__(
        self,
        owners: Sequence[PartitionOwner],
        readiness: Readiness,
        metrics: Metrics,
        *,
        name: str = "workers",
        retry: RetryPolicy = RESTORE_RETRY,
    ) -> None:
        self._owners = list(owners)
        self._readiness = readiness
        self._metrics = metrics
        self._name = name
        self._retry = retry
        self._wanted: set[int] | None = None
        self._owned: set[int] = set()
        #: (component, partition) restored by that owner; what :meth:`restored` waits for
        self._restored: set[tuple[str, int]] = set()
        #: owned partitions whose state is to be dropped and restored again (:meth:`reset`)
        self._stale: set[int] = set()
        #: partitions whose restore the policy gave up on, with the last error (tools only)
        self._gave_up: dict[int, Exception] = {}
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        #: set (and replaced) whenever the wanted or restored sets change
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def owned(self) -> frozenset[int]:
        """The partitions restored by every owner."""
        return frozenset(self._owned)

    def start(self) -> None:
        """Start the reconciling task (kept here, cancelled and awaited by :meth:`stop`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._reconcile(), name=f"loa-ownership-{self._name}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def request(self, partitions: Iterable[int]) -> None:
        """Own exactly ``partitions`` from now on (a rebalance callback calls this)."""
        self._wanted = set(partitions)
        self._settled.clear()
        self._changed.set()
        self._moved()

    async def settled(self) -> None:
        """Wait until the latest wanted set is owned and restored."""
        await self._settled.wait()

    async def assign(self, partitions: Iterable[int]) -> None:
        """Own exactly ``partitions`` and wait until they are restored (for a consumer whose
        fetches must not start before its state is there: the receipts fold). Raises the last
        error of a restore the retry policy gave up on (never with :data:`RESTORE_RETRY`)."""
        self.request(partitions)
        await self.settled()
        if self._gave_up:
            raise self._gave_up[min(self._gave_up)]

    async def reset(self, partitions: Iterable[int]) -> None:
        """Drop the state of those of ``partitions`` owned now and restore it again, through the
        same retries, metric and readiness as an assignment; wait until settled. For a part
        whose state may be half-applied (a batch that failed after folding some records)."""
        self._stale |= set(partitions)
        self._settled.clear()
        self._changed.set()
        await self.settled()

    async def restored(self, component: str, partition: int) -> bool:
        """Wait until ``component`` has restored ``partition`` (True), or until ``partition`` is
        not wanted here (False: another worker owns it, and restores what it needs itself).
        What a read path calls instead of claiming the partition."""
        while True:
            if (component, partition) in self._restored:
                return True
            if self._wanted is not None and partition not in self._wanted:
                return False
            progress = self._progress
            await progress.wait()

    def _moved(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _reconcile(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            wanted = set(self._wanted or ())
            # a bug in an owner must not end ownership: retried until a newer wanted set comes
            applied = await RESTORE_RETRY.run_while(
                partial(self._apply, wanted),
                lambda: not self._changed.is_set(),
                what=f"{self._name}: applying assignment {sorted(wanted)}",
                log=log,
            )
            if applied is not ABANDONED and not self._changed.is_set():
                self._settled.set()

    async def _apply(self, wanted: set[int]) -> None:
        self._gave_up = {p: e for p, e in self._gave_up.items() if p in wanted}
        lost = (self._owned - wanted) | (self._stale & self._owned)
        if lost:
            await self._revoke(lost)
            self._owned -= lost
            log.info("%s: revoked partitions %s", self._name, sorted(lost))
        # the stale ones are revoked now (restored below if still wanted); the rest were not
        # owned. Cleared only here: if a revoke raised, the retry revokes them again
        self._stale.clear()
        new = sorted(wanted - self._owned)
        if not new:
            return
        for owner in self._owners:
            for p in new:
                self._readiness.restoring(owner.component, p)
        pairs = [(owner, p) for p in new for owner in self._owners]
        results = await asyncio.gather(*(self._restore(owner, p) for owner, p in pairs))
        abandoned = {p for (_, p), ok in zip(pairs, results, strict=True) if not ok}
        if abandoned:  # revoked while restoring (or given up on): drop what owners restored
            await self._revoke(abandoned)
        new = [p for p in new if p not in abandoned]
        self._owned |= set(new)
        if new:
            log.info("%s: serving partitions %s", self._name, new)

    async def _revoke(self, partitions: set[int]) -> None:
        for owner in reversed(self._owners):
            await owner.revoke(partitions)
            for p in partitions:
                self._readiness.revoked(owner.component, p)
                self._restored.discard((owner.component, p))
        self._moved()

    async def _restore(self, owner: PartitionOwner, p: int) -> bool:
        """Restore ``p`` until it works (True) or ``p`` is no longer wanted (False)."""
        self._gave_up.pop(p, None)
        try:
            done = await _restore_with_retries(
                owner.component,
                p,
                lambda: owner.restore(p),
                self._readiness,
                self._metrics,
                self._retry,
                still_wanted=lambda: self._wanted is None or p in self._wanted,
            )
        except Exception as exc:  # only a policy with a limit gives up (tools)
            self._gave_up[p] = exc
            return False
        if done:
            self._restored.add((owner.component, p))
            self._moved()
        return done


async def _restore_with_retries(
    component: str,
    p: int,
    restore: Callable[[], Awaitable[None]],
    readiness: Readiness,
    metrics: Metrics,
    retry: RetryPolicy,
    *,
    still_wanted: Callable[[], bool],
) -> bool:
    """One restore under ``retry``, every failure counted and shown in readiness; True once it
    serves, False when ``p`` stopped being wanted (the last error when the policy gives up)."""

    async def failed(attempt: Failed) -> Then | None:
        metrics.restore_failures.labels(component).inc()
        readiness.failed(component, p, repr(attempt.error))
        return None

    done = await retry.run_while(
        restore,
        still_wanted,
        what=f"{component} partition {p}: restore",
        log=log,
        on_failure=failed,
    )
    if done is ABANDONED:
        return False
    readiness.serving(component, p)
    return True


async def restore_once(
    component: str,
    restore: Callable[[], Awaitable[None]],
    readiness: Readiness,
    metrics: Metrics,
    *,
    retry: RetryPolicy = RESTORE_RETRY,
) -> None:
    """Restore a part that owns one partition (0) for the worker's lifetime, with the same
    retries, metric and readiness as a partition of an :class:`Ownership`."""
    readiness.restoring(component, 0)
    await _restore_with_retries(
        component, 0, restore, readiness, metrics, retry, still_wanted=lambda: True
    )


@contextlib.asynccontextmanager
async def owning(
    owners: Sequence[PartitionOwner],
    partitions: Iterable[int],
    *,
    name: str = "tool",
    retry: RetryPolicy = TOOL_RETRY,
) -> AsyncIterator[Ownership]:
    """Own ``partitions`` for a tool, a benchmark or a test that reads them without a consumer
    group (``loa preview``): restored through an :class:`Ownership` like a worker's, the first
    restore error raised (one attempt by default). The owners keep the partitions' state until
    they are stopped (a directory's last snapshot on stop covers them)."""
    ownership = Ownership(owners, Readiness(), Metrics(), name=name, retry=retry)
    ownership.start()
    try:
        await ownership.assign(partitions)
        yield ownership
    finally:
        await ownership.stop()


class OwnershipListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """An aiokafka rebalance listener that hands assignments of ``topic`` to an ownership."""

    def __init__(self, ownership: Ownership, topic: str) -> None:
        self._ownership = ownership
        self._topic = topic

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Every batch is committed in its transaction before the next fetch: nothing to flush.
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # aiokafka fetches again once this returns: the state must be there first
        await self._ownership.assign(tp.partition for tp in assigned if tp.topic == self._topic)
