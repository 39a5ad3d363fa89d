"""The columnar subscriber index of one directory partition (pure numpy, no Kafka)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson

from streams.records import CHANNELS, LANGUAGES
from streams.regions import RegionRegistry

__all__ = ["FLAG_TEST", "ChangeBatch", "DirectoryPartition", "Selection", "decode_changes"]

#: ``flags`` bit: the subscriber belongs to the test audience (gets Exercise and Test alerts).
FLAG_TEST = np.uint8(1)

_CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
_LANGUAGE_INDEX = {c: i for i, c in enumerate(LANGUAGES)}
_U64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Columnar subscriber changes in arrival order; ``deleted`` rows are unsubscribes."""

    ids: npt.NDArray[np.uint64]
    ward: npt.NDArray[np.uint16]
    channel: npt.NDArray[np.uint8]
    language: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]
    deleted: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def concat(batches: list[ChangeBatch]) -> ChangeBatch:
        return ChangeBatch(
            ids=np.concatenate([b.ids for b in batches]),
            ward=np.concatenate([b.ward for b in batches]),
            channel=np.concatenate([b.channel for b in batches]),
            language=np.concatenate([b.language for b in batches]),
            flags=np.concatenate([b.flags for b in batches]),
            deleted=np.concatenate([b.deleted for b in batches]),
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """The recipients an order reaches in one partition, as parallel columns."""

    ids: npt.NDArray[np.uint64]
    channel: npt.NDArray[np.uint8]
    language: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def decode_changes(
    records: Iterable[tuple[bytes | None, bytes | None]], regions: RegionRegistry
) -> tuple[ChangeBatch, list[str]]:
    """Decode ``(key, value)`` change records; returns the batch and one error per bad record.

    A ``None`` value is a tombstone for the recipient in the key. A bad record is reported and
    skipped: it never stops the partition.
    """
    ids: list[int] = []
    ward: list[int] = []
    channel: list[int] = []
    language: list[int] = []
    flags: list[int] = []
    deleted: list[bool] = []
    errors: list[str] = []
    ward_index = regions._ward_index
    for key, value in records:
        try:
            if value is None:
                rid = int(key or b"")
                if not 0 <= rid <= _U64_MAX:
                    raise ValueError("recipient id out of range")
                ids.append(rid)
                ward.append(0)
                channel.append(0)
                language.append(0)
                flags.append(0)
                deleted.append(True)
                continue
            doc = orjson.loads(value)
            rid = doc["recipient_id"]
            if type(rid) is not int or not 0 <= rid <= _U64_MAX:
                raise ValueError(f"recipient_id {rid!r} is not an unsigned 64-bit integer")
            w = ward_index[doc["ward"]]
            c = _CHANNEL_INDEX[doc["channel"]]
            lang = _LANGUAGE_INDEX[doc["language"]]
            test = doc.get("test_audience", False) is True
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        ids.append(rid)
        ward.append(w)
        channel.append(c)
        language.append(lang)
        flags.append(1 if test else 0)
        deleted.append(False)
    batch = ChangeBatch(
        ids=np.array(ids, dtype=np.uint64),
        ward=np.array(ward, dtype=np.uint16),
        channel=np.array(channel, dtype=np.uint8),
        language=np.array(language, dtype=np.uint8),
        flags=np.array(flags, dtype=np.uint8),
        deleted=np.array(deleted, dtype=np.bool_),
    )
    return batch, errors


def _empty_u8() -> npt.NDArray[np.uint8]:
    return np.empty(0, dtype=np.uint8)


@dataclass(slots=True)
class DirectoryPartition:
    """Subscribers of one partition, sorted by id, one numpy column per attribute.

    Changes are buffered and merged in one vectorized pass (:meth:`compact`) before the next
    selection, so replaying millions of changes costs one sort, not one per batch.
    """

    ids: npt.NDArray[np.uint64] = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    ward: npt.NDArray[np.uint16] = field(default_factory=lambda: np.empty(0, dtype=np.uint16))
    channel: npt.NDArray[np.uint8] = field(default_factory=_empty_u8)
    language: npt.NDArray[np.uint8] = field(default_factory=_empty_u8)
    flags: npt.NDArray[np.uint8] = field(default_factory=_empty_u8)
    _pending: list[ChangeBatch] = field(default_factory=list)
    _pending_rows: int = 0

    def __len__(self) -> int:
        self.compact()
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the index columns (the per-subscriber cost)."""
        return sum(a.nbytes for a in (self.ids, self.ward, self.channel, self.language, self.flags))

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
        changes = ChangeBatch.concat(self._pending)
        self._pending.clear()
        self._pending_rows = 0
        # last change per id: unique over the reversed batch keeps the first (= latest) index
        rev_ids = changes.ids[::-1]
        uniq, first_in_rev = np.unique(rev_ids, return_index=True)
        last = len(changes) - 1 - first_in_rev
        deleted = changes.deleted[last]

        n = self.ids.shape[0]
        pos = np.searchsorted(self.ids, uniq)
        found = pos < n
        found[found] = self.ids[pos[found]] == uniq[found]

        upd = found & ~deleted
        at, src = pos[upd], last[upd]
        self.ward[at] = changes.ward[src]
        self.channel[at] = changes.channel[src]
        self.language[at] = changes.language[src]
        self.flags[at] = changes.flags[src]

        keep = np.ones(n, dtype=np.bool_)
        keep[pos[found & deleted]] = False

        new = ~found & ~deleted
        at, src = pos[new], last[new]
        merged_keep = np.insert(keep, at, True)
        self.ids = np.insert(self.ids, at, uniq[new])[merged_keep]
        for name in ("ward", "channel", "language", "flags"):
            column = getattr(changes, name)
            merged = np.insert(getattr(self, name), at, column[src])
            setattr(self, name, merged[merged_keep])

    def select(self, ward_mask: npt.NDArray[np.bool_], *, test_only: bool) -> Selection:
        """Subscribers whose home ward is in ``ward_mask`` (only test audience if asked)."""
        self.compact()
        hit = ward_mask[self.ward]
        if test_only:
            hit &= (self.flags & FLAG_TEST) != 0
        idx = np.flatnonzero(hit)
        return Selection(ids=self.ids[idx], channel=self.channel[idx], language=self.language[idx])
