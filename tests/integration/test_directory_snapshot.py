"""Directory snapshots on the real broker: a takeover from snapshot + tail selects exactly what
a full replay and an oracle from the raw rows select; a corrupt snapshot costs a full replay,
never a wrong audience."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streams.demo.oracle import ward_matches
from streams.directory.index import COLUMNS, ChangeBatch, DirectoryPartition
from streams.directory.load import write_changes
from streams.directory.service import DirectoryService
from streams.directory.snapshot import partition_dir
from streams.directory.synthetic import synthetic_subscribers
from streams.kafkaio.clients import create_topics
from streams.kafkaio.ownership import owning
from streams.regions import RegionRegistry, registry
from streams.settings.model import Settings

pytestmark = pytest.mark.integration

SUBSCRIBERS = 30_000
PROVINCE = "VN-01"


def _changes(subs: ChangeBatch, regions: RegionRegistry) -> ChangeBatch:
    """After the snapshot: 2,000 move home, 1,000 unsubscribe, 1,500 subscribe anew."""
    moved = synthetic_subscribers(2_000, 99, regions, id_base=0, optout_share=0.3)
    gone = subs.take(slice(5_000, 6_000))
    gone = replace(gone, deleted=np.ones(len(gone), dtype=np.bool_))
    fresh = synthetic_subscribers(1_500, 98, regions, id_base=10**9, optout_share=0.1)
    return ChangeBatch.concat([moved, gone, fresh])


def _oracle(rows: ChangeBatch, settings: Settings, regions: RegionRegistry) -> dict[int, set[int]]:
    """Per partition, the recipients of a province alert, from the raw rows in write order."""
    state: dict[int, int] = {}
    for rid, ward, deleted in zip(
        rows.ids.tolist(), rows.ward.tolist(), rows.deleted.tolist(), strict=True
    ):
        if deleted:
            state.pop(rid, None)
        else:
            state[rid] = ward
    # the independent oracle's rule (code string prefixes), not the fan-out's ward mask
    mask = ward_matches(np.asarray(regions.ward_codes, dtype=np.str_), PROVINCE)
    out: dict[int, set[int]] = {p: set() for p in range(settings.partitions)}
    for rid, ward in state.items():
        if mask[ward]:
            out[rid % settings.partitions].add(rid)
    return out


async def _restore(
    settings: Settings, regions: RegionRegistry
) -> tuple[DirectoryService, dict[int, DirectoryPartition]]:
    service = DirectoryService(settings, regions)
    await service.start()
    try:
        async with owning([service], range(settings.partitions)):
            indexes = {p: await service.ready(p, timeout_s=120) for p in range(settings.partitions)}
    finally:
        await service.stop()
    return service, indexes


def _audience(index: DirectoryPartition, regions: RegionRegistry) -> set[int]:
    mask = regions.ward_mask([("/0", PROVINCE)])
    return set(index.select(mask, test_only=False).ids.tolist())


def _same_columns(a: DirectoryPartition, b: DirectoryPartition) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in ("ids", *COLUMNS))


async def test_takeover_from_snapshot_and_tail_selects_what_a_full_replay_selects(
    make_settings: Callable[..., Settings],
) -> None:
    regions = registry()
    settings = make_settings(snapshot_interval_s=0.2)
    await create_topics(settings)
    subs = synthetic_subscribers(SUBSCRIBERS, 31, regions, optout_share=0.05)
    await write_changes(settings, subs, regions)

    # the first worker restores, and its periodic writer snapshots every partition
    first = DirectoryService(settings, regions)
    await first.start()
    try:
        async with owning([first], range(settings.partitions)):
            for p in range(settings.partitions):
                await first.ready(p, timeout_s=120)
            async with asyncio.timeout(60):
                while first.snapshot_writes < settings.partitions:  # noqa: ASYNC110 (a counter)
                    await asyncio.sleep(0.1)
    finally:
        await first.stop()

    changes = _changes(subs, regions)
    await write_changes(settings, changes, regions)
    oracle = _oracle(ChangeBatch.concat([subs, changes]), settings, regions)

    taker, from_snapshot = await _restore(replace(settings, snapshot_interval_s=3600), regions)
    assert (taker.snapshot_loads, taker.snapshot_fallbacks) == (settings.partitions, 0)
    replayer, full = await _restore(replace(settings, snapshot_interval_s=0), regions)
    assert replayer.snapshot_loads == 0
    for p in range(settings.partitions):
        assert _audience(from_snapshot[p], regions) == oracle[p]
        assert _same_columns(from_snapshot[p], full[p])
    assert sum(len(a) for a in oracle.values()) > 0

    # a corrupt column file in each of partition 0's snapshots (the writer may have kept two):
    # that partition replays in full, the others load; all exact
    for snap in partition_dir(settings.resolved_data_dir, settings.directory_topic, 0).iterdir():
        ward = snap / "ward.npy"
        data = bytearray(ward.read_bytes())
        data[-3] ^= 0x01
        ward.write_bytes(bytes(data))
    again, indexes = await _restore(replace(settings, snapshot_interval_s=3600), regions)
    assert (again.snapshot_loads, again.snapshot_fallbacks) == (settings.partitions - 1, 1)
    for p in range(settings.partitions):
        assert _audience(indexes[p], regions) == oracle[p]
        assert _same_columns(indexes[p], full[p])


async def test_snapshot_from_a_re_created_topic_is_not_used(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The topic is deleted and re-created with fewer records than the snapshot had read: the
    snapshot's offset lies past the new end, so the takeover replays the new topic in full."""
    from aiokafka.admin import AIOKafkaAdminClient

    regions = registry()
    settings = make_settings(snapshot_interval_s=3600, partitions=1)
    await create_topics(settings)
    await write_changes(settings, synthetic_subscribers(5_000, 41, regions), regions)
    first = DirectoryService(settings, regions)
    await first.start()
    try:
        async with owning([first], {0}):
            await first.ready(0, timeout_s=120)
            assert await first.snapshot() == 1
    finally:
        await first.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([settings.directory_topic])
        async with asyncio.timeout(60):
            while settings.directory_topic in await admin.list_topics():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    async with asyncio.timeout(60):
        while True:  # the broker may still be finishing the deletion
            try:
                await create_topics(settings)
                await write_changes(settings, synthetic_subscribers(300, 42, regions), regions)
                break
            except Exception:
                await asyncio.sleep(0.5)

    taker, indexes = await _restore(settings, regions)
    assert (taker.snapshot_loads, taker.snapshot_fallbacks) == (0, 1)
    assert indexes[0].ids.tolist() == sorted(synthetic_subscribers(300, 42, regions).ids.tolist())
