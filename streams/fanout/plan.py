"""Who gets which task for one order: lineage dedup, cancel audiences, frequency caps (pure).

Where it sits: between :func:`streams.fanout.encode.select_audience` (who is targeted) and the
scheduler (who emits). Inputs are the order, its directory partition and the partition's order
history (earlier orders with their committed cursors); all of it is durable in Kafka, so the
plan of a resumed order is the plan it had, up to directory changes made since.

* **Served.** The recipients an earlier order of the lineage reached are those of its audience
  up to its committed cursor (tasks go out in recipient-id order). They are recomputed from the
  current directory: a subscriber who moved away since counts by where they live now.
* **Alert** (version 1): its audience.
* **Update**: targeted recipients not yet served get the ``alert``; those already served get an
  ``update`` only when it changes what they were told (``FanoutOrder.changed``), including
  those the update no longer targets (they learn the area shrank).
* **Cancel**: everyone the lineage served gets a ``cancel``.
* **Caps**: a routine order's ``alert`` tasks skip recipients whom ``cap_count`` other routine
  lineages already reached within ``cap_window_s`` (suppressed, reason ``cap``). Extreme and
  severe orders, updates and cancels are never capped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streams.directory.index import DirectoryPartition, Selection
from streams.fanout.encode import KINDS, select_audience
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import RegionRegistry

__all__ = ["CapPolicy", "PastOrder", "Planned", "plan_audience"]

_ALERT, _UPDATE, _CANCEL = (np.uint8(KINDS.index(k)) for k in TaskKind)
_NO_IDS = np.empty(0, dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class PastOrder:
    """An order this partition has seen, with how far it got."""

    order: FanoutOrder
    #: Last recipient id committed; -1 if none.
    cursor: int
    #: When it started (Unix seconds), for the cap window.
    started_at: float


@dataclass(frozen=True, slots=True)
class CapPolicy:
    count: int
    window_s: float
    now: float


@dataclass(frozen=True, slots=True)
class Planned:
    """The audience of an order in recipient-id order, the task kind of each, and what was left
    out by reason."""

    audience: Selection
    kinds: npt.NDArray[np.uint8]
    suppressed: dict[str, int] = field(default_factory=dict)


def plan_audience(
    order: FanoutOrder,
    index: DirectoryPartition,
    regions: RegionRegistry,
    history: Sequence[PastOrder],
    caps: CapPolicy | None = None,
) -> Planned:
    served = _served(
        [
            h
            for h in history
            if h.order.alert_id == order.alert_id and h.order.version < order.version
        ],
        index,
        regions,
    )
    if order.kind is TaskKind.CANCEL:
        audience = _lookup(index, served)
        return Planned(audience, np.full(len(audience), _CANCEL, dtype=np.uint8))
    base = select_audience(order, index, regions)
    new = ~np.isin(base.ids, served, assume_unique=True)
    suppressed: dict[str, int] = {}
    if order.kind is TaskKind.UPDATE and not order.changed and not new.all():
        suppressed["duplicate"] = int((~new).sum())  # told already, and nothing changed
    if caps is not None and order.priority is Priority.ROUTINE and caps.count > 0:
        capped = new & _capped(base.ids, order, index, regions, history, caps)
        if capped.any():
            suppressed["cap"] = int(capped.sum())
            new &= ~capped
    fresh = _take(base, np.flatnonzero(new))
    if order.kind is TaskKind.ALERT or not order.changed:
        return Planned(fresh, np.full(len(fresh), _ALERT, dtype=np.uint8), suppressed)
    told = _lookup(index, served)
    ids = np.concatenate([fresh.ids, told.ids])
    order_by_id = np.argsort(ids, kind="stable")
    kinds = np.concatenate(
        [np.full(len(fresh), _ALERT, dtype=np.uint8), np.full(len(told), _UPDATE, dtype=np.uint8)]
    )
    merged = Selection(
        ids=ids[order_by_id],
        channel=np.concatenate([fresh.channel, told.channel])[order_by_id],
        language=np.concatenate([fresh.language, told.language])[order_by_id],
    )
    return Planned(merged, kinds[order_by_id], suppressed)


def _served(
    past: Sequence[PastOrder], index: DirectoryPartition, regions: RegionRegistry
) -> npt.NDArray[np.uint64]:
    """Sorted ids that ``past`` orders reached (their audience up to their cursor)."""
    reached = _NO_IDS
    for h in past:
        if h.cursor < 0 or h.order.kind is TaskKind.CANCEL:
            continue
        ids = select_audience(h.order, index, regions).ids
        reached = np.union1d(reached, ids[ids <= np.uint64(h.cursor)])
    return reached


def _capped(
    ids: npt.NDArray[np.uint64],
    order: FanoutOrder,
    index: DirectoryPartition,
    regions: RegionRegistry,
    history: Sequence[PastOrder],
    caps: CapPolicy,
) -> npt.NDArray[np.bool_]:
    """Which ``ids`` other routine lineages reached ``caps.count`` times within the window."""
    since = caps.now - caps.window_s
    lineages: dict[str, list[PastOrder]] = {}
    for h in history:
        o = h.order
        if (
            o.alert_id != order.alert_id
            and o.priority is Priority.ROUTINE
            and h.started_at >= since
        ):
            lineages.setdefault(o.alert_id, []).append(h)
    counts = np.zeros(len(ids), dtype=np.int32)
    for past in lineages.values():
        counts += np.isin(ids, _served(past, index, regions), assume_unique=True)
    return counts >= caps.count


def _lookup(index: DirectoryPartition, ids: npt.NDArray[np.uint64]) -> Selection:
    """The directory's channel and language for ``ids`` still subscribed (sorted in, sorted out)."""
    pos = np.searchsorted(index.ids, ids)
    inside = pos < len(index.ids)
    inside[inside] = index.ids[pos[inside]] == ids[inside]
    at = pos[inside]
    return Selection(ids=index.ids[at], channel=index.channel[at], language=index.language[at])


def _take(selection: Selection, at: npt.NDArray[np.intp]) -> Selection:
    return Selection(
        ids=selection.ids[at], channel=selection.channel[at], language=selection.language[at]
    )
