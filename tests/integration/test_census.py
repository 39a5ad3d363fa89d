"""The directory census on the real broker: a directory service writes it, a replica reads it,
and its reach equals a count of the subscriber rows the test wrote itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import h3
import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.directory.census import build_census, decode_census, encode_census
from streams.directory.census_replica import CensusReplica
from streams.directory.index import FLAG_TEST, ChangeBatch
from streams.directory.load import write_changes
from streams.directory.service import DirectoryService
from streams.directory.synthetic import synthetic_subscribers
from streams.kafkaio.clients import (
    create_topics,
    make_admin,
    make_producer,
    make_reader,
    start_all,
)
from streams.kafkaio.ownership import owning
from streams.records import CHANNELS
from streams.regions import circle_cells, registry
from streams.settings.model import Settings
from streams.topics import CENSUS_MAX_MESSAGE_BYTES

pytestmark = pytest.mark.integration

REGIONS = registry()
SAIGON_CIRCLE = (10.78, 106.68, 6.0)


@dataclass
class Rows:
    """The subscribers the test wrote, as plain Python values (ward code strings, H3 ints)."""

    ward: list[str]
    cell: list[int]
    channel: list[str]
    test: list[bool]

    @classmethod
    def of(cls, batch: ChangeBatch) -> Rows:
        return cls(
            ward=[REGIONS.ward_codes[w] for w in batch.ward.tolist()],
            cell=batch.cell.tolist(),
            channel=[CHANNELS[c] for c in batch.channel.tolist()],
            test=[(f & int(FLAG_TEST)) != 0 for f in batch.flags.tolist()],
        )

    def count(
        self, codes: list[str], cells: list[str], *, test_only: bool = False
    ) -> tuple[dict[str, int], int]:
        """(by channel, of which through codes): code = the ward code or a prefix of it plus
        ``-``; cells = compacted hex, a subscriber is inside when its cell is one of theirs at
        its resolution."""
        area = {h3.str_to_int(c) for c in h3.uncompact_cells(cells, 7)} if cells else set()
        by_channel: Counter[str] = Counter({c: 0 for c in CHANNELS})
        through_codes = 0
        for ward, cell, channel, test in zip(
            self.ward, self.cell, self.channel, self.test, strict=True
        ):
            if test_only and not test:
                continue
            coded = any(ward == c or ward.startswith(c + "-") for c in codes)
            if coded or cell in area:
                by_channel[channel] += 1
                through_codes += coded
        return dict(by_channel), through_codes


def _circle() -> list[str]:
    lat, lon, radius = SAIGON_CIRCLE
    return sorted(h3.compact_cells(circle_cells(lat, lon, radius, 7)))


async def _end_offsets(settings: Settings) -> dict[int, int]:
    reader = make_reader(settings)
    await start_all(reader)
    try:
        tps = [TopicPartition(settings.directory_topic, p) for p in range(settings.partitions)]
        return {tp.partition: int(o) for tp, o in (await reader.end_offsets(tps)).items()}
    finally:
        await reader.stop()


async def _census_at(replica: CensusReplica, ends: dict[int, int], timeout_s: float = 60) -> None:
    """Wait until the replica holds a census of every partition that includes ``ends``."""
    deadline = time.monotonic() + timeout_s
    while True:
        await replica.ready(timeout_s=timeout_s)
        have = {p: c.offset for p, c in replica.censuses().items()}
        if all(have.get(p, -1) >= end for p, end in ends.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"census offsets {have}, wanted {ends}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, ChangeBatch, DirectoryService, CensusReplica]]:
    settings = make_settings(partitions=4, census_interval_s=0.5, snapshot_interval_s=0)
    await create_topics(settings)
    subs = synthetic_subscribers(20_000, 11, REGIONS)
    # more test-audience members than the generator's 0.1 %, so test-only counts are not ~0
    rng = np.random.default_rng(11)
    subs = replace(subs, flags=(rng.random(len(subs)) < 0.05).astype(np.uint8) * FLAG_TEST)
    await write_changes(settings, subs, REGIONS)
    service = DirectoryService(settings, REGIONS)
    replica = CensusReplica(settings, REGIONS)
    await service.start()
    await replica.start()
    try:
        async with owning([service], range(settings.partitions)):
            yield settings, subs, service, replica
    finally:
        await replica.stop()
        await service.stop()


async def test_reach_of_a_province_a_ward_a_circle_and_the_country_equals_a_count_of_the_rows(
    live: tuple[Settings, ChangeBatch, DirectoryService, CensusReplica],
) -> None:
    settings, subs, _, replica = live
    await _census_at(replica, await _end_offsets(settings))
    rows = Rows.of(subs)
    ward = rows.ward[0]
    circle = _circle()
    cases: list[tuple[list[str], list[str], bool]] = [
        (["VN-01"], [], False),
        ([ward], [], False),
        ([], circle, False),
        (["VN"], [], False),
        (["VN"], [], True),
        (["VN-79"], circle, False),  # the circle lies in VN-79: home-ward subscribers count once
        (["VN-01", ward], circle, True),
    ]
    for codes, cells, test_only in cases:
        want, through_codes = rows.count(codes, cells, test_only=test_only)
        got = replica.reach(codes, cells, test_only=test_only)
        assert got.by_channel == want, (codes, bool(cells), test_only)
        assert got.by_region_codes == through_codes, (codes, bool(cells), test_only)
        assert got.located_only == sum(want.values()) - through_codes
        assert got.complete and got.partitions == settings.partitions
    national = replica.reach(["VN"], [], test_only=False)
    assert national.total == len(subs)
    assert replica.reach([], circle, test_only=False).located_only > 200  # the circle holds some
    assert replica.errors() == {}


async def test_census_follows_changes_to_the_directory(
    live: tuple[Settings, ChangeBatch, DirectoryService, CensusReplica],
) -> None:
    settings, subs, service, replica = live
    await _census_at(replica, await _end_offsets(settings))
    first = replica.reach(["VN"], [], test_only=False)
    written = service.census_writes
    gone = subs.take(slice(0, 300))
    await write_changes(settings, replace(gone, deleted=np.ones(300, dtype=np.bool_)), REGIONS)
    await _census_at(replica, await _end_offsets(settings))
    after = replica.reach(["VN"], [], test_only=False)
    assert after.total == first.total - 300
    assert after.as_of is not None and first.as_of is not None and after.as_of > first.as_of
    assert service.census_writes > written
    assert service.census_failures == 0


async def test_a_garbage_census_leaves_its_partition_out_and_is_named(
    live: tuple[Settings, ChangeBatch, DirectoryService, CensusReplica],
) -> None:
    settings, _, service, replica = live
    await _census_at(replica, await _end_offsets(settings))
    await service.stop()  # nobody rewrites partition 3 over the garbage
    producer = make_producer(settings)
    await start_all(producer)
    try:
        await producer.send_and_wait(settings.census_topic, b"not a census", key=b"3", partition=0)
    finally:
        await producer.stop()
    await replica.ready(timeout_s=30)
    got = replica.reach(["VN"], [], test_only=False)
    assert (got.partitions_counted, got.partitions, got.complete) == (3, 4, False)
    assert "no census magic" in replica.errors()[b"3"]


@pytest.mark.slow
async def test_a_census_of_ten_million_subscribers_fits_the_topic_and_reads_back(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=1)
    await create_topics(settings)
    subs = synthetic_subscribers(10_000_000, 5, REGIONS)
    columns = {"ward": subs.ward, "cell": subs.cell, "channel": subs.channel, "flags": subs.flags}
    census = build_census(
        columns, partition=0, offset=1, made_at=time.time(), regions=REGIONS, h3_resolution=7
    )
    value = encode_census(census)
    assert len(value) > 1024 * 1024  # larger than the clients' default fetch and request sizes
    producer = make_producer(settings, max_request_size=CENSUS_MAX_MESSAGE_BYTES, linger_ms=0)
    await start_all(producer)
    try:
        await producer.send_and_wait(settings.census_topic, value, key=b"0", partition=0)
    finally:
        await producer.stop()
    replica = CensusReplica(settings, REGIONS)
    await replica.start()
    try:
        await replica.ready(timeout_s=60)
        back = replica.censuses()[0]
    finally:
        await replica.stop()
    assert back.subscribers == 10_000_000
    assert np.array_equal(back.count, decode_census(value).count)
    assert replica.reach(["VN"], [], test_only=False).total == 10_000_000


async def _census_limit(settings: Settings, max_bytes: int) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        topic = ConfigResource(
            ConfigResourceType.TOPIC,
            settings.census_topic,
            configs={"max.message.bytes": str(max_bytes)},
        )
        await admin.alter_configs([topic])
    finally:
        await admin.close()


async def test_a_census_the_broker_refuses_is_logged_once_and_written_when_it_can_be(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(partitions=2, census_interval_s=0.2, snapshot_interval_s=0)
    await create_topics(settings)
    await write_changes(settings, synthetic_subscribers(5_000, 7, REGIONS), REGIONS)
    await _census_limit(settings, 512)  # the broker refuses every census record
    service = DirectoryService(settings, REGIONS)
    replica = CensusReplica(settings, REGIONS)
    await service.start()
    await replica.start()
    try:
        with caplog.at_level(logging.INFO, logger="streams.directory.service"):
            # the directory serves whatever the census does
            async with owning([service], range(settings.partitions)):
                for _ in range(600):  # three rounds refused: three chances to log again
                    if service.census_failures >= 3:
                        break
                    await asyncio.sleep(0.1)
                assert service.census_failures >= 3 and service.census_writes == 0
                await _census_limit(settings, CENSUS_MAX_MESSAGE_BYTES)
                await _census_at(replica, await _end_offsets(settings))
        assert replica.reach(["VN"], [], test_only=False).total == 5_000
        messages = [r.getMessage() for r in caplog.records]
        assert sum("census not written" in m for m in messages) == 1
        assert sum("census written again" in m for m in messages) == 1
    finally:
        await replica.stop()
        await service.stop()
