"""Poison on every topic a worker reads never stalls a partition: the valid record after it
takes effect.

One worker, a small synthetic directory. For each input topic the test writes garbage (not
JSON, JSON of the wrong shape, a null value where a value is expected, a record without a key,
a value of 1.5 MB) to every partition, then a valid record, and shows the valid one acted:
an alert is fanned out exactly, a subscriber change is respected, a re-registered agency's
alert is accepted, a channel limit is applied, a receipt is counted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from streams.demo.localrun import WorkerProcess
from streams.directory.index import NO_CHANNEL, ChangeBatch
from streams.directory.load import write_changes
from streams.directory.synthetic import synthetic_subscribers
from streams.ingest.agency_service import ensure_local_key
from streams.kafkaio.clients import latest_values, make_producer, read_to_end
from streams.records import Progress
from streams.settings.model import Settings
from tests.faults.conftest import SEED, Stage, Workers, make_stage
from tests.integration.conftest import ROOT, TEST_AGENCY, LiveLoa, alert

pytestmark = pytest.mark.faults

SUBSCRIBERS = 4_000
#: The directory test changes subscribers here; the other tests target other provinces.
DIRECTORY_PROVINCE = "VN-46"
HUGE = b'{"x":"' + b"x" * 1_500_000 + b'"}'
#: Garbage every topic gets: not JSON, wrong JSON shapes, JSON null, a null value, 1.5 MB.
GARBAGE: tuple[bytes | None, ...] = (
    b"\xff\xfe\x00 not json",
    b'{"truncated": ',
    b"[1, 2, 3]",
    b"null",
    b'{"unexpected": "shape", "version": "one"}',
    None,
    HUGE,
)


@pytest.fixture(scope="module")
async def poisoned(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stage, WorkerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("poison")
    stage = await make_stage(kafka_bootstrap, tmp, SUBSCRIBERS)
    workers = Workers(tmp)
    worker = workers.start(stage.settings, "worker")
    try:
        yield stage, worker, tmp
    finally:
        workers.stop_all()


def _live(stage: Stage, worker: WorkerProcess) -> LiveLoa:
    return LiveLoa(
        stage.settings,
        stage.regions,
        synthetic_subscribers(SUBSCRIBERS, SEED, stage.regions),
        worker,
        stage.keys,
    )


async def _write(
    settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None, int]]
) -> list[int]:
    """``(key, value, partition)`` records, acknowledged by the broker; returns their offsets."""
    producer = make_producer(settings, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        return [
            (await producer.send_and_wait(topic, value, key=key, partition=partition)).offset
            for key, value, partition in records
        ]
    finally:
        await producer.stop()


def _garbage_everywhere(
    partitions: int, *, key: bytes, compacted: bool
) -> list[tuple[bytes | None, bytes | None, int]]:
    """Garbage on each partition (a compacted topic refuses a record without a key at the
    broker, so only the others get one)."""
    records: list[tuple[bytes | None, bytes | None, int]] = []
    for p in range(partitions):
        records += [(key, value, p) for value in GARBAGE]
        if not compacted:
            records.append((None, b'{"no": "key"}', p))
    return records


async def _fans_out_exactly(
    live: LiveLoa, codes: list[str], *, plus: set[int] = frozenset(), minus: set[int] = frozenset()
) -> dict[int, Progress]:
    """Publish a signed alert for ``codes``; it is accepted and fanned out to exactly the
    directory's audience (``plus``/``minus``: changes the test made to the directory)."""
    identifier = f"P-{uuid.uuid4().hex[:8]}"
    offset = await live.publish(orjson.dumps(alert(identifier, codes)))
    outcome, record = await live.decision(TEST_AGENCY, identifier, offset=offset)
    assert outcome == "accepted", record
    progress = await live.fanned_out(record["alert_id"])
    counts, _ = await live.tasks(record["alert_id"], "extreme")
    assert max(counts.values(), default=1) == 1
    assert set(counts) == (live.expected(codes) | plus) - minus
    return progress


async def test_poison_on_inbound_is_rejected_and_the_next_alert_fans_out(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, _ = poisoned
    live = _live(stage, worker)
    unsigned = orjson.dumps(alert("P-unsigned", ["VN-22"]))
    offsets = await _write(
        stage.settings,
        stage.settings.inbound_topic,
        [(b"poison", value, 0) for value in (*GARBAGE, unsigned)],
    )
    for offset in offsets:
        outcome, record = await live.decision("?", "?", offset=offset)
        assert outcome == "rejected", record
    await _fans_out_exactly(live, ["VN-22"])


async def test_poison_orders_never_stall_a_partition(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, _ = poisoned
    settings = stage.settings
    records = _garbage_everywhere(settings.partitions, key=b"poison/order", compacted=False)

    def order(p: int, **changes: object) -> bytes:
        doc: dict[str, object] = {
            "alert_id": f"poison/{uuid.uuid4().hex[:6]}",
            "version": 1,
            "kind": "alert",
            "priority": "extreme",
            "partition": p,
            "targets": ["VN-22"],
            "test_only": False,
        }
        doc.update(changes)
        return orjson.dumps(doc)

    # orders that parse but cannot be carried out as they stand
    for p in range(settings.partitions):
        other = (p + 1) % settings.partitions
        records += [
            (b"poison/order", order(p, kind="shout"), p),
            (b"poison/order", order(p, targets=["XX-99"]), p),
            (b"poison/order", order(p, cells=["not-a-cell"]), p),
            (b"poison/order", order(p, expires="whenever"), p),
            (b"poison/order", order(p, partition=settings.partitions + 5), p),
            (b"poison/order", order(p, partition=other), p),  # another partition's order
        ]
    await _write(settings, settings.orders_topic, records)
    await _fans_out_exactly(_live(stage, worker), ["VN-22", "VN-48"])
    # the orders that parse but cannot be carried out ended as failed, each on its partition
    ended: dict[bytes, Progress] = {}
    async for record in read_to_end(settings, settings.progress_topic):
        if (record.key or b"").startswith(b"poison/") and record.value is not None:
            ended[record.key] = Progress.from_json(record.value)
    assert len(ended) == 3 * settings.partitions  # unknown region, bad cell, bad expiry
    assert all(p.done and p.stopped == "failed" and p.emitted == 0 for p in ended.values())


async def test_poison_directory_changes_leave_the_next_change_respected(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, _ = poisoned
    settings, regions = stage.settings, stage.regions
    # keys that are not recipient ids, values that are not changes
    records = _garbage_everywhere(settings.partitions, key=b"poison", compacted=True)
    records += [(b"%d" % (SUBSCRIBERS + 50 + p), v, p) for p in range(4) for v in GARBAGE if v]
    await _write(settings, settings.directory_topic, records)

    # then valid changes in one ward of DIRECTORY_PROVINCE (no other test targets it): a new
    # subscriber in it, an old one moved to another ward of the province
    directory = synthetic_subscribers(SUBSCRIBERS, SEED, regions)
    wards = [i for i, c in enumerate(regions.ward_codes) if c.startswith(f"{DIRECTORY_PROVINCE}-")]
    ward = next(w for w in wards if (directory.ward == w).any())
    code = regions.ward_codes[ward]
    moved = int(directory.ids[directory.ward == ward][0])
    elsewhere = next(w for w in wards if w != ward)
    new_id = SUBSCRIBERS + 7
    one = np.ones(2, dtype=np.uint8)
    batch = ChangeBatch(
        ids=np.array([new_id, moved], dtype=np.uint64),
        ward=np.array([ward, elsewhere], dtype=np.uint16),
        channel=one * 0,
        language=one * 0,
        flags=one * 0,
        deleted=np.zeros(2, dtype=np.bool_),
        cell=np.zeros(2, dtype=np.uint64),
        channel2=one * NO_CHANNEL,
        channel3=one * NO_CHANNEL,
        optout=np.zeros(2, dtype=np.uint16),
    )
    await write_changes(settings, batch, regions)
    await _fans_out_exactly(_live(stage, worker), [code], plus={new_id}, minus={moved})


async def test_poison_agency_records_leave_the_next_registration_in_force(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, tmp = poisoned
    settings = stage.settings
    # garbage under the test agency's own id removes it (fail closed) ...
    await _write(
        settings,
        settings.agencies_topic,
        _garbage_everywhere(1, key=TEST_AGENCY.encode(), compacted=True),
    )
    # ... until its valid record is written again, after which its alerts are accepted
    await ensure_local_key(
        settings, TEST_AGENCY, tmp / "keys", agencies_path=ROOT / "deploy" / "agencies" / "testing"
    )
    await _fans_out_exactly(_live(stage, worker), ["VN-22"])


async def test_poison_accepted_records_leave_ingest_and_fanout_working(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, _ = poisoned
    settings = stage.settings
    await _write(
        settings, settings.accepted_topic, _garbage_everywhere(1, key=b"poison/msg", compacted=True)
    )
    await _fans_out_exactly(_live(stage, worker), ["VN-48"])


async def test_poison_channel_limits_leave_the_next_limit_in_force(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, worker, _ = poisoned
    settings = stage.settings
    records = _garbage_everywhere(1, key=b"oa", compacted=True)
    records += [(b"oa", b'{"rate": "fast"}', 0), (b"oa", b'{"rate": -5}', 0)]
    await _write(settings, settings.channels_topic, records)
    # the valid limit after them: 40 oa tasks/s makes chunks of 4 recipients
    await _write(settings, settings.channels_topic, [(b"oa", b'{"rate": 40}', 0)])
    live = _live(stage, worker)
    identifier = f"C-{uuid.uuid4().hex[:8]}"
    codes = ["VN-01", "VN-79"]
    offset = await live.publish(orjson.dumps(alert(identifier, codes)))
    outcome, record = await live.decision(TEST_AGENCY, identifier, offset=offset)
    assert outcome == "accepted", record
    alert_id = record["alert_id"]
    steps = await _progress_steps(settings, alert_id, records_wanted=12)
    await _write(settings, settings.channels_topic, [(b"oa", None, 0)])  # lifted
    await live.fanned_out(alert_id)
    counts, _ = await live.tasks(alert_id, "extreme")
    assert set(counts) == live.expected(codes)
    # while the limit held, every chunk was a tenth of a second of it
    assert steps and max(steps) <= 4, steps


async def _progress_steps(settings: Settings, alert_id: str, *, records_wanted: int) -> list[int]:
    """Tasks per committed chunk of ``alert_id`` (from consecutive progress records), once
    ``records_wanted`` chunks are committed."""
    prefix = f"{alert_id}:1:".encode()
    for _ in range(300):  # bounded: 60 s
        last: dict[int, int] = {}
        steps: list[int] = []
        async for record in read_to_end(settings, settings.progress_topic):
            if record.value is None or not (record.key or b"").startswith(prefix):
                continue
            progress = Progress.from_json(record.value)
            steps.append(progress.emitted - last.get(progress.partition, 0))
            last[progress.partition] = progress.emitted
        if len(steps) >= records_wanted:
            return [s for s in steps if s]
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {records_wanted} progress records of {alert_id}")


async def test_poison_receipts_leave_the_next_receipt_counted(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    stage, _, _ = poisoned
    settings = stage.settings
    records = _garbage_everywhere(settings.partitions, key=b"1", compacted=False)
    records += [
        (b"1", b'{"alert_id": "x", "version": 0, "channel": "oa", "outcome": "delivered"}', p)
        for p in range(settings.partitions)
    ]
    await _write(settings, settings.receipts_topic, records)
    alert_id = f"receipts/{uuid.uuid4().hex[:6]}"
    valid = [
        (
            b"%d" % (p + 1),
            orjson.dumps(
                {
                    "alert_id": alert_id,
                    "version": 1,
                    "kind": "alert",
                    "priority": "extreme",
                    "recipient_id": p + 1,
                    "channel": "oa",
                    "idempotency_key": f"{alert_id}:1:alert:{p + 1}",
                    "outcome": "delivered",
                }
            ),
            p,
        )
        for p in range(settings.partitions)
    ]
    await _write(settings, settings.receipts_topic, valid)
    partitions = list(range(settings.partitions))
    for _ in range(150):  # bounded: 30 s and more
        tallies = await latest_values(settings, settings.delivery_topic, partitions)
        delivered = sum(t["delivered"] for t in tallies if t["alert_id"] == alert_id)
        if delivered == settings.partitions:
            break
        await asyncio.sleep(0.2)
    assert delivered == settings.partitions


async def test_a_restarted_worker_restores_past_all_the_poison(
    poisoned: tuple[Stage, WorkerProcess, Path],
) -> None:
    """Restore reads the orders and progress topics from the start: the poison orders of this
    module and garbage progress records must not stop it."""
    stage, worker, tmp = poisoned
    settings = stage.settings
    assert worker.alive  # it outlived every test above
    await _write(
        settings,
        settings.progress_topic,
        _garbage_everywhere(settings.partitions, key=b"poison/1:1:0", compacted=True),
    )
    worker.stop()
    workers = Workers(tmp)
    try:
        again = workers.start(settings, "again")
        await _fans_out_exactly(_live(stage, again), ["VN-31"])
        assert again.alive
    finally:
        workers.stop_all()
