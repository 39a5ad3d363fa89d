"""The walking skeleton on the real broker: inbound alert -> exactly one task per recipient."""

from __future__ import annotations

import uuid

import orjson
import pytest

from streams.schemas import validator
from tests.integration.conftest import LiveLoa, alert, live_loa

pytestmark = pytest.mark.integration


async def _fan_out(live: LiveLoa, regions: list[str], *, areas: int = 1) -> tuple[str, set[int]]:
    identifier = f"A-{uuid.uuid4().hex[:8]}"
    doc = alert(identifier, regions)
    if areas > 1:  # the same codes split over several overlapping areas
        doc["info"][0]["area"] = [
            {"areaDesc": f"part {i}", "regions": regions[i::areas] + regions[:1]}
            for i in range(areas)
        ]
    await live.publish(orjson.dumps(doc))
    outcome, record = await live.decision("test.agency.vn", identifier)
    assert outcome == "accepted", record
    alert_id = record["alert_id"]
    progress = await live.fanned_out(alert_id)
    counts, _ = await live.tasks(alert_id, "extreme")
    expected = live.expected(regions)
    assert sum(p.targeted for p in progress.values()) == len(expected)
    assert sum(p.emitted for p in progress.values()) == len(expected)
    missing = expected - set(counts)
    extra = set(counts) - expected
    twice = {r for r, c in counts.items() if c > 1}
    assert (len(missing), len(extra), len(twice)) == (0, 0, 0)
    return alert_id, set(counts)


async def test_province_targets_reach_exactly_the_directory_audience(live: LiveLoa) -> None:
    await _fan_out(live, ["VN-22", "VN-31", "VN-48"])


async def test_ward_targets_reach_exactly_the_directory_audience(live: LiveLoa) -> None:
    wards = list(live.regions.ward_codes[100:160])
    await _fan_out(live, wards)


async def test_mixed_and_overlapping_targets_give_one_task_per_recipient(live: LiveLoa) -> None:
    # a province, wards inside it (overlap) and wards elsewhere, spread over overlapping areas
    hanoi_wards = [c for c in live.regions.ward_codes if c.startswith("VN-01-")][:5]
    others = list(live.regions.ward_codes[2000:2030])
    await _fan_out(live, ["VN-01", *hanoi_wards, *others], areas=3)


async def test_national_alert_reaches_every_subscriber(live: LiveLoa) -> None:
    _, got = await _fan_out(live, ["VN"])
    assert len(got) == len(live.directory)


async def test_send_tasks_follow_the_schema_and_name_their_idempotency_key(live: LiveLoa) -> None:
    alert_id, _ = await _fan_out(live, ["VN-46"])
    _, docs = await live.tasks(alert_id, "extreme")
    check = validator("send_task")
    for doc in docs[:500]:
        check.validate(doc)
        assert doc["idempotency_key"] == f"{alert_id}:1:{doc['recipient_id']}"
    assert len({d["idempotency_key"] for d in docs}) == len(docs)


async def test_malformed_alert_is_rejected_with_reason_and_next_alert_still_fans_out(
    live: LiveLoa,
) -> None:
    bad_id = f"BAD-{uuid.uuid4().hex[:8]}"
    bad = alert(bad_id, ["VN-22"])
    del bad["info"][0]["severity"]
    await live.publish(orjson.dumps(bad))
    outcome, record = await live.decision("test.agency.vn", bad_id)
    assert outcome == "rejected"
    assert record["code"] == "schema"
    assert record["pointer"] == "/info/0/severity"  # the missing element itself
    assert "severity" in record["message"]
    validator("rejection").validate(record)
    # not JSON at all: no sender to match on, so look it up by its excerpt
    await live.publish(b"\xff\xfe not json")
    await _fan_out(live, ["VN-22"])


async def test_unknown_region_is_rejected_at_its_field(live: LiveLoa) -> None:
    identifier = f"R-{uuid.uuid4().hex[:8]}"
    await live.publish(orjson.dumps(alert(identifier, ["VN-22", "VN-99"])))
    outcome, record = await live.decision("test.agency.vn", identifier)
    assert outcome == "rejected"
    assert record["code"] == "unknown_region"
    assert record["pointer"] == "/info/0/area/0/regions/1"


async def test_public_append_path_reaches_exactly_the_same_audience(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # LOA_FANOUT_RAW_BATCHES=false: one aiokafka BatchBuilder.append per task, no internals
    async with live_loa(
        kafka_bootstrap, tmp_path_factory, subscribers=10_000, LOA_FANOUT_RAW_BATCHES="false"
    ) as public:
        await _fan_out(public, ["VN-22", "VN-01"])
