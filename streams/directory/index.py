"""The columnar subscriber index of one directory partition (pure numpy, no Kafka).

One row per subscriber, one numpy column per attribute, sorted by recipient id:

=========== ======= ===================================================================
column      dtype   meaning
=========== ======= ===================================================================
ids         uint64  recipient id
ward        uint16  home ward (index into ``RegionRegistry.ward_codes``; gives province)
cell        uint64  coarse location, an H3 cell at ``LOA_H3_RESOLUTION``; 0 = none
channel     uint8   first channel of preference (index into ``CHANNELS``); the send task's
channel2    uint8   second preference, ``NO_CHANNEL`` if none
channel3    uint8   third preference, ``NO_CHANNEL`` if none
language    uint8   index into ``LANGUAGES``
flags       uint8   ``FLAG_TEST``: member of the test audience
optout      uint16  bit i set: opted out of CAP category ``CATEGORIES[i]``
=========== ======= ===================================================================

25 bytes per subscriber (:attr:`DirectoryPartition.nbytes`), no Python object per row.

A :class:`Selection` carries, besides the first channel, a one-byte **fallback code** per
recipient (:func:`fallback_code`): which further channels they prefer, in order
(:data:`FALLBACKS`). The encoder turns it into the send task's ``fallback`` list column-wise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streams.records import CATEGORIES, CHANNELS

__all__ = [
    "COLUMNS",
    "FALLBACKS",
    "FLAG_TEST",
    "NO_CHANNEL",
    "ChangeBatch",
    "Columns",
    "ColumnsAt",
    "DirectoryPartition",
    "Selection",
    "category_mask",
    "fallback_code",
]

#: A partition's ``ids`` and attribute columns as :meth:`DirectoryPartition.columns` hands them.
Columns = dict[str, npt.NDArray[np.unsignedinteger]]
#: An owned partition's offset and its columns at or past it (None: not owned), read with no
#: reassignment in between (what a snapshot and a census are made from).
ColumnsAt = Callable[[int], Awaitable[tuple[int, Columns] | None]]

#: ``flags`` bit: the subscriber belongs to the test audience (gets Exercise and Test alerts).
FLAG_TEST = np.uint8(1)
#: ``channel2`` / ``channel3`` value for "no further preference".
NO_CHANNEL = np.uint8(255)

_NO = len(CHANNELS)  # NO_CHANNEL's place in a fallback code
#: ``FALLBACKS[code]``: the channel indexes (into ``CHANNELS``) a fallback code stands for, in
#: preference order; code ``second * (len(CHANNELS) + 1) + third``, "none" counting as
#: ``len(CHANNELS)`` (so code 15 is "no further channel").
FALLBACKS: tuple[tuple[int, ...], ...] = tuple(
    tuple(c for c in (second, third) if c != _NO)
    for second in range(_NO + 1)
    for third in range(_NO + 1)
)


def fallback_code(
    channel2: npt.NDArray[np.uint8], channel3: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """The fallback code of each row (vectorized): its second and third preference in one byte."""
    k = np.uint8(_NO)
    return (np.minimum(channel2, k) * np.uint8(_NO + 1) + np.minimum(channel3, k)).astype(np.uint8)


#: Attribute columns (besides ``ids``) and their dtypes, in one place for batch and index.
COLUMNS: dict[str, type[np.unsignedinteger]] = {
    "ward": np.uint16,
    "cell": np.uint64,
    "channel": np.uint8,
    "channel2": np.uint8,
    "channel3": np.uint8,
    "language": np.uint8,
    "flags": np.uint8,
    "optout": np.uint16,
}

_CATEGORY_BIT = {c: 1 << i for i, c in enumerate(CATEGORIES)}


def category_mask(categories: tuple[str, ...] | list[str]) -> int:
    """Bitmask of CAP categories (``KeyError`` on an unknown one)."""
    mask = 0
    for c in categories:
        mask |= _CATEGORY_BIT[c]
    return mask


def _empty(dtype: type[np.unsignedinteger]) -> npt.NDArray[np.unsignedinteger]:
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Columnar subscriber changes in arrival order; ``deleted`` rows are unsubscribes.

    Columns a caller leaves out default to "none": no cell, no second or third channel, no
    opt-outs (so a batch of id, ward, channel, language and flags is a complete subscribe).
    """

    ids: npt.NDArray[np.uint64]
    ward: npt.NDArray[np.uint16]
    channel: npt.NDArray[np.uint8]
    language: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]
    deleted: npt.NDArray[np.bool_]
    cell: npt.NDArray[np.uint64] = field(default_factory=lambda: _empty(np.uint64))
    channel2: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    channel3: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    optout: npt.NDArray[np.uint16] = field(default_factory=lambda: _empty(np.uint16))

    def __post_init__(self) -> None:
        n = self.ids.shape[0]
        defaults = {"cell": 0, "channel2": NO_CHANNEL, "channel3": NO_CHANNEL, "optout": 0}
        for name, fill in defaults.items():
            column = getattr(self, name)
            if column.shape[0] != n:
                if column.shape[0] != 0:
                    raise ValueError(f"column {name} has {column.shape[0]} rows, ids {n}")
                object.__setattr__(self, name, np.full(n, fill, dtype=COLUMNS[name]))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, idx: slice | npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> ChangeBatch:
        return ChangeBatch(
            ids=self.ids[idx],
            deleted=self.deleted[idx],
            **{name: getattr(self, name)[idx] for name in COLUMNS},
        )

    def last_per_id(self) -> ChangeBatch:
        """One change per recipient, the latest, sorted by id (what compaction would keep)."""
        if len(self) < 2 or bool((self.ids[1:] > self.ids[:-1]).all()):
            return self  # already sorted and unique (a generator's or an encoder's batch)
        rev_ids = self.ids[::-1]
        _, first_in_rev = np.unique(rev_ids, return_index=True)
        return self.take(len(self) - 1 - first_in_rev)

    @staticmethod
    def concat(batches: list[ChangeBatch]) -> ChangeBatch:
        return ChangeBatch(
            ids=np.concatenate([b.ids for b in batches]),
            deleted=np.concatenate([b.deleted for b in batches]),
            **{name: np.concatenate([getattr(b, name) for b in batches]) for name in COLUMNS},
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """The recipients an order reaches in one partition, as parallel columns."""

    ids: npt.NDArray[np.uint64]
    channel: npt.NDArray[np.uint8]
    language: npt.NDArray[np.uint8]
    #: :func:`fallback_code` of the recipient's further channels (the send task's ``fallback``).
    fallback: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(slots=True)
class DirectoryPartition:
    """Subscribers of one partition, sorted by id, one numpy column per attribute.

    Changes are buffered and merged in one vectorized pass (:meth:`compact`) before the next
    selection, so replaying millions of changes costs one sort, not one per batch.
    """

    ids: npt.NDArray[np.uint64] = field(default_factory=lambda: _empty(np.uint64))
    ward: npt.NDArray[np.uint16] = field(default_factory=lambda: _empty(np.uint16))
    cell: npt.NDArray[np.uint64] = field(default_factory=lambda: _empty(np.uint64))
    channel: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    channel2: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    channel3: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    language: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    flags: npt.NDArray[np.uint8] = field(default_factory=lambda: _empty(np.uint8))
    optout: npt.NDArray[np.uint16] = field(default_factory=lambda: _empty(np.uint16))
    _pending: list[ChangeBatch] = field(default_factory=list)
    _pending_rows: int = 0
    #: The columns were handed out (:meth:`columns`): copy before changing one in place.
    _shared: bool = False

    def __len__(self) -> int:
        self.compact()
        return int(self.ids.shape[0])

    @property
    def pending_rows(self) -> int:
        """Changes applied but not merged into the columns yet (merged by :meth:`compact`)."""
        return self._pending_rows

    @property
    def nbytes(self) -> int:
        """Bytes held by the index columns (the per-subscriber cost)."""
        return int(self.ids.nbytes) + sum(int(getattr(self, c).nbytes) for c in COLUMNS)

    def columns(self) -> dict[str, npt.NDArray[np.unsignedinteger]]:
        """``ids`` and every attribute column as of now (compacted), for a snapshot: later
        changes never alter the arrays handed out (they are copied first)."""
        self.compact()
        self._shared = True
        return {"ids": self.ids, **{name: getattr(self, name) for name in COLUMNS}}

    def apply(self, batch: ChangeBatch, *, compact_after: int = 2_000_000) -> None:
        """Buffer a batch of changes; merges when enough are pending."""
        if len(batch) == 0:
            return
        self._pending.append(batch)
        self._pending_rows += len(batch)
        if self._pending_rows >= compact_after:
            self.compact()

    def compact(self) -> None:
        """Merge pending changes: the last change per id wins; tombstones remove."""
        if not self._pending:
            return
        changes = ChangeBatch.concat(self._pending).last_per_id()
        self._pending.clear()
        self._pending_rows = 0
        uniq, deleted = changes.ids, changes.deleted

        n = self.ids.shape[0]
        pos = np.searchsorted(self.ids, uniq)
        found = pos < n
        found[found] = self.ids[pos[found]] == uniq[found]

        upd = found & ~deleted
        at = pos[upd]
        if self._shared and at.shape[0]:
            for name in COLUMNS:
                setattr(self, name, getattr(self, name).copy())
            self._shared = False
        for name in COLUMNS:
            getattr(self, name)[at] = getattr(changes, name)[upd]

        keep = np.ones(n, dtype=np.bool_)
        keep[pos[found & deleted]] = False

        new = ~found & ~deleted
        at = pos[new]
        if not new.any():
            if not keep.all():
                self.ids = self.ids[keep]
                for name in COLUMNS:
                    setattr(self, name, getattr(self, name)[keep])
            return
        merged_keep = np.insert(keep, at, True)
        self.ids = np.insert(self.ids, at, uniq[new])[merged_keep]
        for name in COLUMNS:
            merged = np.insert(getattr(self, name), at, getattr(changes, name)[new])
            setattr(self, name, merged[merged_keep])

    def select(
        self,
        ward_mask: npt.NDArray[np.bool_],
        *,
        test_only: bool,
        cells: npt.NDArray[np.bool_] | None = None,
        exclude_optout: int = 0,
    ) -> Selection:
        """Subscribers whose home ward is in ``ward_mask`` or whose row is set in ``cells``.

        ``cells`` is a row mask (location cell inside the target area, see
        :meth:`streams.directory.cells.CellSet.contains`). With ``test_only`` only the test
        audience. ``exclude_optout``: the alert's category bits; a subscriber who opted out of
        every one of them is left out (0: nobody is, as for extreme alerts).
        """
        return self.take(
            self.rows(ward_mask, test_only=test_only, cells=cells, exclude_optout=exclude_optout)
        )

    def rows(
        self,
        ward_mask: npt.NDArray[np.bool_],
        *,
        test_only: bool,
        cells: npt.NDArray[np.bool_] | None = None,
        exclude_optout: int = 0,
    ) -> npt.NDArray[np.bool_]:
        """The row mask behind :meth:`select` (rows are in recipient-id order)."""
        self.compact()
        hit = ward_mask[self.ward]
        if cells is not None:
            hit |= cells
        if test_only:
            hit &= (self.flags & FLAG_TEST) != 0
        if exclude_optout:
            alert = np.uint16(exclude_optout)
            hit &= (alert & ~self.optout) != 0
        return hit

    def take(self, rows: npt.NDArray[np.bool_]) -> Selection:
        """The subscribers of a row mask, in recipient-id order."""
        idx = np.flatnonzero(rows)
        return Selection(
            ids=self.ids[idx],
            channel=self.channel[idx],
            language=self.language[idx],
            fallback=fallback_code(self.channel2[idx], self.channel3[idx]),
        )
