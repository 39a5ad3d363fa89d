"""Commit watermarks (pure): the offset each partition may commit while tasks settle out of order.

Where it sits: the delivery worker fetches tasks in offset order, settles them in any order
(many calls in flight, some slow, some held until a retry's due time) and commits consumed
offsets in its transactions. It may commit a partition only up to its oldest unsettled task:
committing past one would lose it on a crash, since nobody would fetch it again.

Guarantee: :meth:`CommitTracker.committable` never returns an offset above an unsettled task's,
and returns ``last fetched + 1`` once every fetched task of the partition settled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["CommitTracker"]

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class _Partition:
    #: Fetched offsets not yet committed, ascending (settled ones stay until the head settles).
    offsets: deque[int] = field(default_factory=deque)
    settled: set[int] = field(default_factory=set)
    #: The offset to commit next (one past the last settled prefix).
    next_commit: int | None = None
    committed: int | None = None


class CommitTracker(Generic[P]):
    """Per partition: fetched offsets, which of them settled, what may be committed."""

    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def add(self, partition: P, offset: int) -> None:
        """A fetched record (offsets of one partition arrive ascending)."""
        part = self._parts.setdefault(partition, _Partition())
        if part.offsets and offset <= part.offsets[-1]:
            raise ValueError(f"offset {offset} of {partition} fetched out of order")
        part.offsets.append(offset)

    def settle(self, partition: P, offset: int) -> None:
        """The record at ``offset`` needs nothing more (its results are in the transaction)."""
        part = self._parts.get(partition)
        if part is None:  # revoked meanwhile: its next owner fetches it again
            return
        part.settled.add(offset)
        while part.offsets and part.offsets[0] in part.settled:
            head = part.offsets.popleft()
            part.settled.discard(head)
            part.next_commit = head + 1

    def unsettled(self, partition: P) -> int:
        part = self._parts.get(partition)
        return 0 if part is None else len(part.offsets)

    def total_unsettled(self) -> int:
        return sum(len(p.offsets) for p in self._parts.values())

    def committable(self) -> dict[P, int]:
        """Offsets to commit now: per partition that moved since its last commit."""
        return {
            tp: part.next_commit
            for tp, part in self._parts.items()
            if part.next_commit is not None and part.next_commit != part.committed
        }

    def committed(self, offsets: dict[P, int]) -> None:
        """Those offsets are committed (the transaction succeeded)."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset

    def drop(self, partitions: Iterable[P]) -> None:
        """Forget revoked partitions (their unsettled tasks are fetched again by the next
        owner, from the last committed offset)."""
        for tp in partitions:
            self._parts.pop(tp, None)
