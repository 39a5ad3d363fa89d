"""Commit watermarks (pure): what each partition may commit while tasks settle out of order.

Where it sits: the delivery worker fetches tasks in offset order, settles them in any order
(many calls in flight, some slow, some held until a retry's due time) and commits consumed
offsets in its transactions. It may commit a partition only up to its oldest unsettled task:
committing past one would lose it on a crash, since nobody would fetch it again.

The records a settled task leads to (its receipt, a retry copy, a fallback task) are released
only together with an offset that covers the task: were a task's receipt committed while the
offset stayed below it, a crash would make the next owner settle it again and write a second
receipt. So a slow task holds back the *receipts* of the tasks behind it in its partition (at
most for its call's timeout), never their calls.

Guarantee: :meth:`CommitTracker.take` never returns an offset above an unsettled task's, returns
``last fetched + 1`` once every fetched task of the partition settled, and returns a settled
task's records in the same call as the first offset above it, exactly once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["CommitTracker"]

P = TypeVar("P", bound=Hashable)
R = TypeVar("R")


@dataclass(slots=True)
class _Partition(Generic[R]):
    #: Fetched offsets whose records were not released yet, ascending.
    offsets: deque[int] = field(default_factory=deque)
    #: Settled offsets above the head, with their records.
    settled: dict[int, Sequence[R]] = field(default_factory=dict)
    #: The offset to commit next (one past the last settled prefix).
    next_commit: int | None = None
    committed: int | None = None


class CommitTracker(Generic[P, R]):
    """Per partition: fetched offsets, which of them settled (with their records), what may be
    committed."""

    def __init__(self) -> None:
        self._parts: dict[P, _Partition[R]] = {}
        self._ready: list[R] = []

    def add(self, partition: P, offset: int) -> None:
        """A fetched record (offsets of one partition arrive ascending)."""
        part = self._parts.setdefault(partition, _Partition())
        if part.offsets and offset <= part.offsets[-1]:
            raise ValueError(f"offset {offset} of {partition} fetched out of order")
        part.offsets.append(offset)

    def settle(self, partition: P, offset: int, records: Sequence[R] = ()) -> None:
        """The task at ``offset`` needs nothing more than ``records`` written."""
        part = self._parts.get(partition)
        if part is None:  # revoked meanwhile: its next owner fetches it again
            return
        part.settled[offset] = records
        while part.offsets and part.offsets[0] in part.settled:
            head = part.offsets.popleft()
            self._ready.extend(part.settled.pop(head))
            part.next_commit = head + 1

    def owns(self, partition: P) -> bool:
        return partition in self._parts

    def unsettled(self, partition: P) -> int:
        """Fetched tasks of ``partition`` not committable yet (settled above the head too)."""
        part = self._parts.get(partition)
        return 0 if part is None else len(part.offsets)

    def total_unsettled(self) -> int:
        return sum(len(p.offsets) for p in self._parts.values())

    def pending(self) -> bool:
        """Anything not committed yet: unsettled tasks or released records not taken."""
        return bool(self._ready) or any(p.offsets for p in self._parts.values())

    def take(self) -> tuple[dict[P, int], list[R]]:
        """Offsets to commit now (per partition that moved since its last commit) and the
        records of the tasks below them, in the order they became committable. Each record is
        returned once: commit them in one transaction with the offsets, or crash."""
        offsets = {
            tp: part.next_commit
            for tp, part in self._parts.items()
            if part.next_commit is not None and part.next_commit != part.committed
        }
        ready, self._ready = self._ready, []
        return offsets, ready

    def committed(self, offsets: dict[P, int]) -> None:
        """Those offsets are committed (the transaction succeeded)."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset

    def drop(self, partitions: Iterable[P]) -> None:
        """Forget revoked partitions, records of settled tasks not yet released included
        (the next owner fetches their tasks again from the last committed offset). Call
        :meth:`take` and commit first: released records are not tracked per partition."""
        for tp in partitions:
            self._parts.pop(tp, None)
