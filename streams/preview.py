"""``loa preview FILE``: who an alert would reach, without sending anything.

Runs the ingest decision on the file (format, schema, regions, geofences; not the signature,
the lifecycle or the expiry: a preview is for drafting), then selects the audience from the
directory as the fan-out would, partition by partition, and counts it by province and channel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from streams.directory.service import DirectoryService
from streams.fanout.plan import select_audience
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.records import CHANNELS
from streams.regions import RegionRegistry
from streams.settings import Settings

__all__ = ["Preview", "preview"]

_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # so a draft's expiry does not hide its audience


@dataclass(frozen=True, slots=True)
class Preview:
    alert_id: str
    priority: str
    status: str
    directory: int
    reached: int
    by_province: dict[str, int]
    by_channel: dict[str, int]


async def preview(settings: Settings, raw: bytes, regions: RegionRegistry) -> Preview | Rejected:
    decision = decide(
        raw,
        regions=regions,
        partitions=settings.partitions,
        max_bytes=settings.max_alert_bytes,
        h3_resolution=settings.h3_resolution,
        now=_LONG_AGO,
    )
    if isinstance(decision, Rejected):
        return decision
    assert not isinstance(decision, Duplicate)  # no lifecycle state: never a duplicate
    return await _count(settings, decision, regions)


async def _count(settings: Settings, decision: Accepted, regions: RegionRegistry) -> Preview:
    alert = decision.alert
    provinces: Counter[str] = Counter()
    channels = np.zeros(len(CHANNELS), dtype=np.int64)
    directory_size = reached = 0
    service = DirectoryService(settings, regions)
    await service.start()
    try:
        await service.assign(set(range(settings.partitions)))
        for p in range(settings.partitions):
            index = await service.ready(p)
            directory_size += len(index)
            if not decision.orders:
                continue  # Draft, System, Ack, Error, Cancel: nobody
            audience = select_audience(replace(decision.orders[0], partition=p), index, regions)
            reached += len(audience)
            wards = index.ward[np.searchsorted(index.ids, audience.ids)]
            for province, n in Counter(regions.ward_province[wards].tolist()).items():
                provinces[regions.province_names[province]] += n
            channels += np.bincount(audience.channel, minlength=len(CHANNELS))
    finally:
        await service.stop()
    return Preview(
        alert_id=alert.alert_id,
        priority=alert.priority.value,
        status=alert.status,
        directory=directory_size,
        reached=reached,
        by_province=dict(provinces.most_common()),
        by_channel={c: int(n) for c, n in zip(CHANNELS, channels, strict=True)},
    )
