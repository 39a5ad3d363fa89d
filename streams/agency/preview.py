"""``loa preview FILE``: who an alert would reach, and with which task, without sending anything.

Runs the ingest decision on the file (format, schema, regions, geofences, and the lifecycle
against the live state; not the signature, the agency's rights or the expiry: a preview is for
drafting), then plans each directory partition's audience exactly as the fan-out would
(:func:`streams.fanout.plan.plan_audience`, with the lineage's earlier orders and their committed
cursors), and counts it by task kind, province and channel.

Read-only: the lifecycle state is a replica of ``loa.alerts.accepted`` read to its end, the
lineage history comes from ``loa.fanout.orders`` and ``loa.fanout.progress``, the audience from
the directory; nothing is written. So an Update shows who would get an ``update`` (served
earlier and told something new) and who the ``alert`` (newly targeted), a Cancel who would get
the ``cancel``, and a re-publish of an accepted message is a duplicate that reaches nobody.
Routine frequency caps are not applied (they depend on when the order would start).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from streams.directory.service import DirectoryService
from streams.fanout.encode import KINDS
from streams.fanout.plan import PastOrder, plan_audience
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.lifecycle import LifecycleState
from streams.ingest.reach import Warning
from streams.kafkaio.clients import read_to_end
from streams.kafkaio.ownership import owning
from streams.records import CHANNELS, AcceptedAlert, FanoutOrder, Progress
from streams.regions import RegionRegistry
from streams.settings.model import Settings

__all__ = ["Preview", "preview", "read_lifecycle"]

_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # so a draft's expiry does not hide its audience
_NOBODY = (
    "this Actual alert would reach nobody: no subscriber lives in its regions or shared a"
    " location in its shapes"
)


@dataclass(frozen=True, slots=True)
class Preview:
    alert_id: str
    priority: str
    status: str
    directory: int
    reached: int
    by_province: dict[str, int]
    by_channel: dict[str, int]
    #: Version of the lineage this message would be (1 for an Alert) and its CAP msgType.
    version: int = 1
    msg_type: str = "Alert"
    #: Recipients per task kind (``alert``, ``update``, ``cancel``); zeros included.
    by_kind: dict[str, int] | None = None
    #: A re-publish of an accepted message: nobody is reached again.
    duplicate: bool = False
    #: What ingest would tell the agency (``streams.ingest.reach``), with ``empty_audience``
    #: judged on this exact count.
    warnings: tuple[dict[str, str], ...] = ()


async def read_lifecycle(settings: Settings) -> LifecycleState:
    """The lifecycle state as a worker holds it: ``loa.alerts.accepted`` replayed to its end."""
    state = LifecycleState()
    async for record in read_to_end(settings, settings.accepted_topic):
        if record.value:
            state.apply(AcceptedAlert.from_json(record.value))
    return state


async def preview(settings: Settings, raw: bytes, regions: RegionRegistry) -> Preview | Rejected:
    decision = decide(
        raw,
        regions=regions,
        partitions=settings.partitions,
        max_bytes=settings.max_alert_bytes,
        state=await read_lifecycle(settings),
        h3_resolution=settings.h3_resolution,
        cancel_tasks=settings.cancel_tasks,
        now=_LONG_AGO,
    )
    if isinstance(decision, Rejected):
        return decision
    return await _count(settings, decision, regions)


async def _count(
    settings: Settings, decision: Accepted | Duplicate, regions: RegionRegistry
) -> Preview:
    provinces: Counter[str] = Counter()
    channels = np.zeros(len(CHANNELS), dtype=np.int64)
    kinds = np.zeros(len(KINDS), dtype=np.int64)
    directory_size = 0
    orders = decision.orders if isinstance(decision, Accepted) else ()
    service = DirectoryService(settings, regions)
    await service.start()
    try:
        async with owning([service], range(settings.partitions), name="preview"):
            for p in range(settings.partitions):
                index = await service.ready(p)
                directory_size += len(index)
                if not orders:
                    continue  # Draft, System, Ack, Error, a duplicate: nobody
                order = replace(orders[0], partition=p)
                history = await _lineage_history(settings, order)
                planned = plan_audience(order, index, regions, history)
                audience = planned.audience
                wards = index.ward[np.searchsorted(index.ids, audience.ids)]
                for province, n in Counter(regions.ward_province[wards].tolist()).items():
                    provinces[regions.province_names[province]] += n
                channels += np.bincount(audience.channel, minlength=len(CHANNELS))
                kinds += np.bincount(planned.kinds, minlength=len(KINDS))
    finally:
        await service.stop()
    plan = decision.plan
    status = decision.alert.status if isinstance(decision, Accepted) else ""
    priority = decision.alert.priority.value if isinstance(decision, Accepted) else ""
    msg_type = decision.alert.msg_type if isinstance(decision, Accepted) else ""
    warnings = decision.alert.warnings if isinstance(decision, Accepted) else ()
    if status == "Actual" and msg_type in ("Alert", "Update") and not int(kinds.sum()):
        warnings = (*warnings, Warning("empty_audience", _NOBODY, "/info").to_doc())
    return Preview(
        alert_id=plan.lineage,
        priority=priority,
        status=status,
        directory=directory_size,
        reached=int(kinds.sum()),
        by_province=dict(provinces.most_common()),
        by_channel={c: int(n) for c, n in zip(CHANNELS, channels, strict=True)},
        version=plan.version,
        msg_type=msg_type,
        by_kind={k.value: int(n) for k, n in zip(KINDS, kinds, strict=True)},
        duplicate=isinstance(decision, Duplicate),
        warnings=tuple(warnings),
    )


async def _lineage_history(settings: Settings, order: FanoutOrder) -> list[PastOrder]:
    """Earlier orders of ``order``'s lineage on its partition, with their committed cursors."""
    p = order.partition
    cursors: dict[int, Progress] = {}
    async for record in read_to_end(settings, settings.progress_topic, partitions=[p]):
        progress = _progress(record.value)
        if progress is not None and progress.alert_id == order.alert_id:
            cursors[progress.version] = progress
    history: list[PastOrder] = []
    async for record in read_to_end(settings, settings.orders_topic, partitions=[p]):
        past = _order(record.value)
        if past is None or past.partition != p or past.alert_id != order.alert_id:
            continue
        if past.version >= order.version:
            continue
        done = cursors.get(past.version)
        cursor = done.cursor if done is not None and done.cursor is not None else -1
        history.append(PastOrder(past, cursor, done.started_at if done is not None else 0.0))
    return history


def _progress(value: bytes | None) -> Progress | None:
    try:
        return Progress.from_json(value or b"")
    except Exception:  # not a progress record: the worker skips it too
        return None


def _order(value: bytes | None) -> FanoutOrder | None:
    try:
        return FanoutOrder.from_json(value or b"")
    except Exception:  # not an order: the worker skips it too
        return None
