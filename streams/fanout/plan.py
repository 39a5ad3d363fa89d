"""Who gets which task for one order: targeting, lineage dedup, cancel audiences, caps (pure).

Where it sits: between the directory partition (:func:`select_audience`: who is targeted) and the
encoder and emitter (:mod:`streams.fanout.encode`, :mod:`streams.fanout.scheduler`). Inputs are
the order, its directory partition and the partition's order history (earlier orders with their
committed cursors); all of it is durable in Kafka, so the plan of a resumed order is the plan it
had, up to directory changes made since.

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

from streams.directory.cells import CellSet
from streams.directory.index import DirectoryPartition, Selection, category_mask
from streams.fanout.encode import KINDS
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import RegionRegistry

__all__ = [
    "CapPolicy",
    "PastOrder",
    "Planned",
    "audience_rows",
    "plan_audience",
    "select_audience",
]

_ALERT, _UPDATE, _CANCEL = (np.uint8(KINDS.index(k)) for k in TaskKind)


def select_audience(
    order: FanoutOrder, directory: DirectoryPartition, regions: RegionRegistry
) -> Selection:
    """Recipients of ``directory`` that ``order`` targets, in recipient-id order
    (:func:`audience_rows` gathered)."""
    return directory.take(audience_rows(order, directory, regions))


def audience_rows(
    order: FanoutOrder, directory: DirectoryPartition, regions: RegionRegistry
) -> npt.NDArray[np.bool_]:
    """Row mask over ``directory`` of the recipients ``order`` targets.

    Targeted: home ward under one of the order's region codes, or location cell inside the
    order's H3 cells (polygons, circles). Then only the test audience if the order is test-only,
    and without those who opted out of every one of the alert's categories unless the priority
    is extreme (extreme alerts cannot be opted out of).
    """
    mask = regions.ward_mask((f"/targets/{i}", code) for i, code in enumerate(order.targets))
    cells = None
    if order.cells:
        directory.compact()
        area = CellSet.of(int(c, 16) for c in order.cells)
        cells = area.contains(directory.cell)
    optout = 0 if order.priority is Priority.EXTREME else category_mask(order.categories)
    return directory.rows(mask, test_only=order.test_only, cells=cells, exclude_optout=optout)


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
    # Everything is a boolean mask over the partition's rows (recipient-id order): unions,
    # differences and counts are one vectorized pass each, and "up to the cursor" is a prefix.
    earlier = [
        h for h in history if h.order.alert_id == order.alert_id and h.order.version < order.version
    ]
    served = _served(earlier, index, regions)
    if order.kind is TaskKind.CANCEL:
        return _planned(index, served, np.full(len(index.ids), _CANCEL, dtype=np.uint8), {})
    base = audience_rows(order, index, regions)
    new = base & ~served
    suppressed: dict[str, int] = {}
    if order.kind is TaskKind.UPDATE and not order.changed:
        already = int(np.count_nonzero(base & served))
        if already:
            suppressed["duplicate"] = already  # told already, and nothing changed
    if caps is not None and order.priority is Priority.ROUTINE and caps.count > 0:
        capped = new & _capped(order, index, regions, history, caps)
        if capped.any():
            suppressed["cap"] = int(np.count_nonzero(capped))
            new &= ~capped
    if order.kind is TaskKind.ALERT or not order.changed:
        return _planned(index, new, np.full(len(index.ids), _ALERT, dtype=np.uint8), suppressed)
    kinds = np.where(new, _ALERT, _UPDATE).astype(np.uint8)
    return _planned(index, new | served, kinds, suppressed)


def _planned(
    index: DirectoryPartition,
    rows: npt.NDArray[np.bool_],
    kinds: npt.NDArray[np.uint8],
    suppressed: dict[str, int],
) -> Planned:
    return Planned(index.take(rows), kinds[rows], suppressed)


def _served(
    past: Sequence[PastOrder], index: DirectoryPartition, regions: RegionRegistry
) -> npt.NDArray[np.bool_]:
    """Rows that ``past`` orders reached (their audience up to their cursor)."""
    reached = np.zeros(len(index.ids), dtype=np.bool_)
    for h in past:
        if h.cursor < 0 or h.order.kind is TaskKind.CANCEL:
            continue
        upto = int(np.searchsorted(index.ids, np.uint64(h.cursor), side="right"))
        rows = audience_rows(h.order, index, regions)
        reached[:upto] |= rows[:upto]
    return reached


def _capped(
    order: FanoutOrder,
    index: DirectoryPartition,
    regions: RegionRegistry,
    history: Sequence[PastOrder],
    caps: CapPolicy,
) -> npt.NDArray[np.bool_]:
    """Rows that ``caps.count`` other routine lineages reached within the window."""
    since = caps.now - caps.window_s
    lineages: dict[str, list[PastOrder]] = {}
    for h in history:
        o = h.order
        other = o.alert_id != order.alert_id
        if other and o.priority is Priority.ROUTINE and h.started_at >= since:
            lineages.setdefault(o.alert_id, []).append(h)
    if len(lineages) < caps.count:
        return np.zeros(len(index.ids), dtype=np.bool_)
    counts = np.zeros(len(index.ids), dtype=np.int16)
    for past in lineages.values():
        counts += _served(past, index, regions)
    return counts >= caps.count
