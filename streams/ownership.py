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
  retried with backoff until it succeeds or the partition is revoked.
* **Serve.** Readiness (:class:`streams.health.Readiness`) says ``serving`` once restored.
* **Revoke.** Owners drop the partition's state (and stop its producer) before a new owner can
  rely on it; a restore in progress for a revoked partition is abandoned.

Guarantee: a partition is reported ``serving`` by a component only after that component's
restore returned; nothing here commits offsets or writes to Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from aiokafka.abc import ConsumerRebalanceListener

from streams.errors import LoaError
from streams.health import Readiness
from streams.metrics import Metrics
from streams.tasks import cancel_and_wait

__all__ = ["RESTORE_BACKOFF_S", "Ownership", "OwnershipListener", "PartitionOwner"]

log = logging.getLogger(__name__)

#: Delays between restore attempts of one partition (the last one repeats).
RESTORE_BACKOFF_S: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)


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
        backoff_s: Sequence[float] = RESTORE_BACKOFF_S,
    ) -> None:
        self._owners = list(owners)
        self._readiness = readiness
        self._metrics = metrics
        self._name = name
        self._backoff = tuple(backoff_s)
        self._wanted: set[int] | None = None
        self._owned: set[int] = set()
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
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

    async def settled(self) -> None:
        """Wait until the latest wanted set is owned and restored."""
        await self._settled.wait()

    async def assign(self, partitions: Iterable[int]) -> None:
        """Own exactly ``partitions`` and wait until they are restored (for a consumer whose
        fetches must not start before its state is there: the receipts fold)."""
        self.request(partitions)
        await self.settled()

    async def _reconcile(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            wanted = set(self._wanted or ())
            try:
                await self._apply(wanted)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in an owner must not end ownership: log, try again
                log.exception("%s: applying assignment %s failed", self._name, sorted(wanted))
                await asyncio.sleep(self._backoff[-1])
                self._changed.set()
                continue
            if not self._changed.is_set():
                self._settled.set()

    async def _apply(self, wanted: set[int]) -> None:
        lost = self._owned - wanted
        if lost:
            await self._revoke(lost)
            self._owned -= lost
            log.info("%s: revoked partitions %s", self._name, sorted(lost))
        new = sorted(wanted - self._owned)
        if not new:
            return
        for owner in self._owners:
            for p in new:
                self._readiness.restoring(owner.component, p)
        pairs = [(owner, p) for p in new for owner in self._owners]
        results = await asyncio.gather(*(self._restore(owner, p) for owner, p in pairs))
        abandoned = {p for (_, p), ok in zip(pairs, results, strict=True) if not ok}
        if abandoned:  # revoked while restoring: drop what the owners restored of it
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

    async def _restore(self, owner: PartitionOwner, p: int) -> bool:
        """Restore ``p`` until it works (True) or ``p`` is no longer wanted (False)."""
        return await self.retry(owner.component, p, lambda: owner.restore(p))

    async def retry(self, component: str, p: int, restore: Callable[[], Awaitable[None]]) -> bool:
        attempt = 0
        while self._wanted is None or p in self._wanted:
            try:
                await restore()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                self._metrics.restore_failures.labels(component).inc()
                self._readiness.failed(component, p, repr(exc))
                if isinstance(exc, LoaError) and exc.retriable:  # a stall, a broker away: no bug
                    log.warning(
                        "%s partition %d: restore not done: %s (attempt %d); retry in %.1f s",
                        component,
                        p,
                        exc,
                        attempt,
                        delay,
                    )
                else:
                    log.exception(
                        "%s partition %d: restore failed (attempt %d); retry in %.1f s",
                        component,
                        p,
                        attempt,
                        delay,
                    )
                await asyncio.sleep(delay)
                continue
            self._readiness.serving(component, p)
            return True
        return False


async def restore_once(
    component: str,
    restore: Callable[[], Awaitable[None]],
    readiness: Readiness,
    metrics: Metrics,
    *,
    backoff_s: Sequence[float] = RESTORE_BACKOFF_S,
) -> None:
    """Restore a part that owns one partition (0) for the worker's lifetime, with the same
    retries, metric and readiness as a partition of an :class:`Ownership`."""
    readiness.restoring(component, 0)
    ownership = Ownership([], readiness, metrics, name=component, backoff_s=backoff_s)
    await ownership.retry(component, 0, restore)


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
