"""The directory on the real broker: moves, unsubscribes, restarts, shapes and bulk files."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from streams.demo.localrun import WorkerProcess
from streams.demo.oracle import ward_matches
from streams.directory.index import ChangeBatch
from streams.directory.load import write_changes
from streams.directory.service import DirectoryService
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import decode_changes, encode_subscribers
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.kafkaio.ownership import owning
from streams.regions import registry
from streams.settings.model import Settings
from tests.integration.conftest import LiveLoa, alert, oracle_rows, register_agencies

pytestmark = pytest.mark.integration

SUBSCRIBERS = 20_000
SEED = 21
PROVINCE = "VN-01"
HANOI_POLYGON = "20.98,105.78 20.98,105.90 21.08,105.90 21.08,105.78 20.98,105.78"
SAIGON_CIRCLE = (10.78, 106.68, 6.0)


@pytest.fixture(scope="module")
async def loa(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveLoa]:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"dir-{tag}",
        app_id=f"dir-{tag}",
        partitions=4,
        data_dir=str(tmp_path_factory.mktemp(f"data-{tag}")),
    )
    regions = registry()
    subs = synthetic_subscribers(SUBSCRIBERS, SEED, regions, optout_share=0.05)
    await create_topics(settings)
    keys = await register_agencies(settings, Path(tmp_path_factory.mktemp("keys")))
    await write_changes(settings, subs, regions)
    log_path = Path(tmp_path_factory.mktemp("logs")) / "worker.log"
    live = LiveLoa(settings, regions, subs, WorkerProcess(settings, log_path).start(), keys)
    try:
        yield live
    finally:
        live.worker.stop()


async def _fan_out(loa: LiveLoa, doc: dict[str, object]) -> set[int]:
    """Publish ``doc``, wait for its fan-out, return the recipients (each exactly once)."""
    await loa.publish(orjson.dumps(doc))
    outcome, record = await loa.decision("test.agency.vn", str(doc["identifier"]))
    assert outcome == "accepted", record
    progress = await loa.fanned_out(record["alert_id"])
    counts, _ = await loa.tasks(record["alert_id"], "extreme")
    assert all(c == 1 for c in counts.values())
    assert sum(p.emitted for p in progress.values()) == len(counts)
    return set(counts)


def _in_province(loa: LiveLoa, directory: ChangeBatch) -> set[int]:
    rows = oracle_rows(directory, loa.regions)
    return set(rows.ids[ward_matches(rows.ward, PROVINCE)].tolist())


async def test_polygon_and_circle_reach_exactly_the_subscribers_whose_cells_are_inside(
    loa: LiveLoa,
) -> None:
    doc = alert(f"G-{uuid.uuid4().hex[:8]}", ["VN-01"])
    lat, lon, radius = SAIGON_CIRCLE
    doc["info"][0]["area"] = [  # type: ignore[index]
        {"areaDesc": "Hà Nội centre", "polygon": [HANOI_POLYGON]},
        {"areaDesc": "Sài Gòn", "circle": [f"{lat},{lon} {radius}"]},
    ]
    expected = loa.expected_audience(doc)
    assert len(expected.sure) > 200  # both shapes hold synthetic subscribers
    assert expected.problems(await _fan_out(loa, doc)) == []


async def test_restarted_worker_restores_the_directory_with_the_changes_made_while_down(
    loa: LiveLoa,
) -> None:
    regions, subs = loa.regions, loa.directory
    before = await _fan_out(loa, alert(f"R1-{uuid.uuid4().hex[:8]}", [PROVINCE]))
    assert before == _in_province(loa, subs)
    loa.worker.stop()

    # while the worker is down: moves in and out of the province, unsubscribes, newcomers
    hanoi = np.flatnonzero(regions.ward_mask([("/0", PROVINCE)]))
    home = np.isin(subs.ward, hanoi)
    rng = np.random.default_rng(5)
    movers_in = rng.choice(np.flatnonzero(~home), 300, replace=False)
    movers_out = rng.choice(np.flatnonzero(home), 100, replace=False)
    leavers = rng.choice(np.setdiff1d(np.flatnonzero(home), movers_out), 100, replace=False)
    changed = subs.take(np.concatenate([movers_in, movers_out, leavers]))
    ward = changed.ward.copy()
    ward[:300] = rng.choice(hanoi, 300)
    ward[300:400] = np.flatnonzero(~regions.ward_mask([("/0", PROVINCE)]))[0]
    deleted = np.zeros(len(changed), dtype=np.bool_)
    deleted[400:] = True
    changes = replace(changed, ward=ward, deleted=deleted)
    newcomers = synthetic_subscribers(200, 6, regions, id_base=10**9)
    newcomers = replace(newcomers, ward=rng.choice(hanoi, 200).astype(np.uint16))
    await write_changes(loa.settings, ChangeBatch.concat([changes, newcomers]), regions)

    current = ChangeBatch.concat([subs, changes, newcomers]).last_per_id()
    current = current.take(~current.deleted)
    loa.worker = WorkerProcess(loa.settings, loa.worker.log_path).start()
    after = await _fan_out(loa, alert(f"R2-{uuid.uuid4().hex[:8]}", [PROVINCE]))
    assert after == _in_province(loa, current)
    assert after - before == set(subs.ids[movers_in].tolist()) | set(newcomers.ids.tolist())
    assert before - after == set(subs.ids[np.concatenate([movers_out, leavers])].tolist())

    # and a change made while it runs is respected by the next alert too
    gone = np.array(sorted(after)[:50], dtype=np.uint64)
    await write_changes(
        loa.settings,
        replace(current.take(np.isin(current.ids, gone)), deleted=np.ones(50, dtype=np.bool_)),
        regions,
    )
    again = await _fan_out(loa, alert(f"R3-{uuid.uuid4().hex[:8]}", [PROVINCE]))
    assert again == after - set(gone.tolist())


async def test_load_file_reports_each_bad_row_and_writes_the_good_ones(
    make_settings: object, tmp_path: Path
) -> None:
    settings: Settings = make_settings()  # type: ignore[operator]
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "recipient_id,ward,channels,language,lat,lon,opted_out\n"
        "101,VN-01-00004,oa|sms,vi,21.03,105.85,Met\n"
        "102,VN-01-99999,oa,vi,,,\n"
        "103,00004,push,en,,,\n"
        "104,VN-01-00004,pigeon,vi,,,\n"
        "105,VN-01-00004,sms,xx,,,\n"
        "106,VN-79-25747,sms,vi,10.78,106.68,\n",
        encoding="utf-8",
    )
    env = dict(os.environ)
    env.update(
        LOA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        LOA_TOPIC_PREFIX=settings.topic_prefix,
        LOA_APP_ID=settings.app_id,
        LOA_PARTITIONS=str(settings.partitions),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams",
        "directory",
        "load",
        str(path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 1, stderr
    for line in (3, 5, 6):
        assert f"{path}:{line}: " in stderr
    assert stderr.count("(skipped)") == 3
    assert "loaded 3 subscribers" in stdout
    records = [(r.key, r.value) async for r in read_to_end(settings, settings.directory_topic)]
    batch, errors = decode_changes(records, registry())
    assert errors == []
    assert sorted(batch.ids.tolist()) == [101, 103, 106]


async def test_restore_reads_what_a_read_committed_consumer_reads_in_raw_and_fallback_modes(
    make_settings: object,
) -> None:
    """Loader batches, another writer's JSON, tombstones, an aborted and a committed
    transaction, on the real broker: both restore paths hold exactly the committed directory,
    and aiokafka's own consumer reads the loader's batches the same way."""
    settings: Settings = make_settings(partitions=2)  # type: ignore[operator]
    regions = registry()
    await create_topics(settings)
    subs = synthetic_subscribers(30_000, 3, regions, optout_share=0.05)
    await write_changes(settings, subs, regions)
    gone = subs.ids[:1_000:7]
    await write_changes(
        settings,
        replace(subs.take(np.isin(subs.ids, gone)), deleted=np.ones(gone.size, bool)),
        regions,
    )
    foreign = {
        b"40001": b'{"recipient_id": 40001, "ward": "VN-01-00004", "channels": ["sms"],'
        b' "language": "vi"}',
        b"40002": b"not a change",
    }
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in foreign.items():
            await producer.send_and_wait(
                settings.directory_topic, value, key=key, partition=int(key) % 2
            )
    finally:
        await producer.stop()
    moved = subs.take(slice(5_000, 5_100))
    for commit, ids_from in ((False, 50_000), (True, 60_000)):
        txn = make_producer(settings, transactional_id=f"{settings.app_id}-t{int(commit)}")
        await txn.start()
        try:
            await txn.begin_transaction()
            newcomers = synthetic_subscribers(100, 4, regions, id_base=ids_from)
            for batch in (newcomers, replace(moved, ward=moved.ward[::-1].copy())):
                for key, value in encode_subscribers(batch, regions):
                    await txn.send(settings.directory_topic, value, key=key, partition=int(key) % 2)
            await (txn.commit_transaction() if commit else txn.abort_transaction())
        finally:
            await txn.stop()

    committed = synthetic_subscribers(100, 4, regions, id_base=60_000)
    expected = ChangeBatch.concat(
        [
            subs,
            replace(subs.take(np.isin(subs.ids, gone)), deleted=np.ones(gone.size, bool)),
            decode_changes([(b"40001", foreign[b"40001"])], regions)[0],
            committed,
            replace(moved, ward=moved.ward[::-1].copy()),
        ]
    ).last_per_id()
    expected = expected.take(~expected.deleted)

    records = [(r.key, r.value) async for r in read_to_end(settings, settings.directory_topic)]
    via_consumer, errors = decode_changes(records, regions)
    assert len(errors) == 1
    for raw in (True, False):
        # no snapshots: each path replays the topic (the first service's stop would otherwise
        # leave a snapshot the second one starts from)
        service = DirectoryService(
            replace(settings, directory_raw_kafka=raw, snapshot_interval_s=0), regions
        )
        await service.start()
        try:
            async with owning([service], {0, 1}):
                indexes = [await service.ready(p, timeout_s=60) for p in (0, 1)]
        finally:
            await service.stop()
        assert service.bad_records == 1
        got = np.sort(np.concatenate([ix.ids for ix in indexes]))
        assert np.array_equal(got, expected.ids)
        for ix in indexes:
            at = np.searchsorted(expected.ids, ix.ids)
            for column in ("ward", "cell", "channel", "channel2", "language", "optout"):
                assert np.array_equal(getattr(ix, column), getattr(expected, column)[at]), column
    final = via_consumer.take(np.argsort(via_consumer.ids, kind="stable")).last_per_id()
    assert np.array_equal(final.ids[~final.deleted], expected.ids)
