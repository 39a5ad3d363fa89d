"""The receipts fold and the status summary (pure, no broker)."""

from __future__ import annotations

import orjson
import pytest

from streams.errors import MalformedInput
from streams.receipts.fold import PartitionTallies, Receipt, Tally, parse_receipt, tally_key
from streams.receipts.status import render, summarize
from streams.records import Progress
from streams.schemas import validator


def _receipt(outcome: str = "delivered", **over: object) -> bytes:
    doc = {
        "alert_id": "gov.vn/T1",
        "version": 1,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": 42,
        "channel": "sms",
        "idempotency_key": "gov.vn/T1:1:alert:42",
        "outcome": outcome,
        "reason": None if outcome == "delivered" else "unreachable",
        "at": 1.0,
        "worker": "w",
    }
    doc.update(over)
    return orjson.dumps(doc)


def test_receipts_fold_into_per_alert_tallies_by_outcome_reason_and_channel() -> None:
    state = PartitionTallies(3)
    receipts = [parse_receipt(_receipt()) for _ in range(5)]
    receipts += [parse_receipt(_receipt("failed")) for _ in range(2)]
    receipts += [parse_receipt(_receipt(version=2, channel="oa"))]
    changed, counts = state.fold(receipts)
    assert changed == {("gov.vn/T1", 1), ("gov.vn/T1", 2)}
    assert counts == {("sms", "delivered"): 5, ("sms", "failed"): 2, ("oa", "delivered"): 1}
    tally = state.tallies[("gov.vn/T1", 1)]
    assert (tally.delivered, tally.failed, dict(tally.failed_reasons)) == (5, 2, {"unreachable": 2})


def test_tally_round_trips_through_its_schema() -> None:
    state = PartitionTallies(0)
    state.fold([parse_receipt(_receipt("failed")), parse_receipt(_receipt())])
    doc = state.tallies[("gov.vn/T1", 1)].to_doc(("gov.vn/T1", 1), 0, 5.0)
    validator("delivery").validate(doc)
    restored = PartitionTallies(0)
    restored.load([orjson.loads(orjson.dumps(doc))])
    assert restored.tallies[("gov.vn/T1", 1)] == Tally.from_doc(doc)
    assert restored.tallies[("gov.vn/T1", 1)].to_doc(("gov.vn/T1", 1), 0, 5.0) == doc


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[1]", _receipt(outcome="lost"), orjson.dumps({"alert_id": "x"})],
)
def test_unreadable_receipt_is_malformed_input(raw: bytes | None) -> None:
    with pytest.raises(MalformedInput):
        parse_receipt(raw)


def test_status_sums_partitions_and_is_done_when_every_task_has_a_receipt() -> None:
    progress = [
        {
            "alert_id": "a/1",
            "version": 1,
            "partition": p,
            "targeted": 10,
            "emitted": 8,
            "done": True,
            "suppressed": {"cap": 2},
        }
        for p in range(2)
    ]
    progress.append(
        {"alert_id": "other", "version": 1, "targeted": 99, "emitted": 99, "done": True}
    )
    tallies = [
        {
            "alert_id": "a/1",
            "version": 1,
            "partition": 0,
            "delivered": 9,
            "failed": 1,
            "failed_reasons": {"unreachable": 1},
            "channels": {},
        },
    ]
    status = summarize("a/1", 1, 2, progress, tallies)
    assert (status.targeted, status.emitted, status.suppressed) == (20, 16, {"cap": 4})
    assert (status.delivered, status.failed, status.fanout_done, status.done) == (9, 1, True, False)
    tallies.append(
        {**tallies[0], "partition": 1, "delivered": 6, "failed": 0, "failed_reasons": {}}
    )
    status = summarize("a/1", 1, 2, progress, tallies)
    assert status.done
    text = render(status)
    assert "a/1 v1: done" in text
    assert "(cap 4)" in text and "(unreachable 1)" in text
    assert not summarize("a/1", 1, 2, progress[:1], []).fanout_done


def test_a_stopped_order_counts_its_unreached_recipients_as_suppressed() -> None:
    progress = [
        {
            "alert_id": "a/1",
            "version": 1,
            "partition": 0,
            "targeted": 10,
            "emitted": 4,
            "done": True,
            "stopped": "cancelled",
        },
    ]
    status = summarize("a/1", 1, 1, progress, [])
    assert status.suppressed == {"cancelled": 6}


def test_a_failure_that_moved_on_counts_as_a_fallback_and_the_recipient_stays_pending() -> None:
    state = PartitionTallies(0)
    moved = _receipt("failed", channel="oa", reason="http_400", fallback="sms")
    state.fold([parse_receipt(moved), parse_receipt(_receipt("failed"))])
    tally = state.tallies[("gov.vn/T1", 1)]
    assert (tally.failed, dict(tally.fallbacks)) == (1, {"oa>sms http_400": 1})
    doc = tally.to_doc(("gov.vn/T1", 1), 0, 5.0)
    validator("delivery").validate(doc)
    progress = [{"alert_id": "gov.vn/T1", "version": 1, "targeted": 2, "emitted": 2, "done": True}]
    status = summarize("gov.vn/T1", 1, 1, progress, [doc])
    assert (status.failed, status.fell_back, status.done) == (1, 1, False)
    # the fallback task's receipt settles the recipient who moved
    state.fold([parse_receipt(_receipt(idempotency_key="gov.vn/T1:1:alert:42/sms"))])
    status = summarize(
        "gov.vn/T1",
        1,
        1,
        progress,
        [state.tallies[("gov.vn/T1", 1)].to_doc(("gov.vn/T1", 1), 0, 6.0)],
    )
    assert (status.delivered, status.failed, status.fell_back, status.done) == (1, 1, 1, True)
    assert "fell back              1  (oa>sms http_400 1)" in render(status)


def test_tallies_written_before_fallbacks_were_counted_still_restore() -> None:
    doc = {"delivered": 3, "failed": 1, "failed_reasons": {"x": 1}, "channels": {}}
    assert Tally.from_doc(doc).fallbacks == {}


def test_receipt_with_an_unknown_fallback_channel_is_malformed() -> None:
    with pytest.raises(MalformedInput, match="fallback"):
        parse_receipt(_receipt("failed", fallback="pigeon"))


@pytest.mark.parametrize(
    ("alert_id", "version", "partition", "key"),
    [
        ("gov.vn/T1", 1, 0, b"gov.vn/T1:1:0"),
        ("gov.vn/T1", 12, 3, b"gov.vn/T1:12:3"),
        # a sender may hold ':' (the schema allows it): the last two fields still parse
        ("urn:oid:2.49.0.1.704/T:9", 2, 15, b"urn:oid:2.49.0.1.704/T:9:2:15"),
        ("qn.gov.vn/Bão-1", 1, 1, "qn.gov.vn/Bão-1:1:1".encode()),
    ],
)
def test_tally_key_is_alert_version_partition_and_parses_back_from_the_right(
    alert_id: str, version: int, partition: int, key: bytes
) -> None:
    """The compacted tallies topic keeps one record per key: the key must name the alert,
    the version and the receipts partition (``schemas/delivery.schema.json``), like the
    fan-out's progress key, or tallies of different partitions would overwrite each other."""
    assert tally_key(alert_id, version, partition) == key
    head, v, p = key.decode().rsplit(":", 2)
    assert (head, int(v), int(p)) == (alert_id, version, partition)
    progress = Progress(alert_id, version, partition, "extreme", 0, 0, False, 0.0)
    assert progress.key == key
    doc = Tally().to_doc((alert_id, version), partition, 1.0)
    assert tally_key(doc["alert_id"], doc["version"], doc["partition"]) == key


def test_tally_keys_differ_for_every_alert_version_and_partition() -> None:
    keys = {
        tally_key(a, v, p)
        for a in ("gov.vn/T1", "gov.vn/T12")
        for v in (1, 2, 12)
        for p in (1, 2, 21)
    }
    assert len(keys) == 2 * 3 * 3


@pytest.mark.parametrize(
    ("raw", "message", "pointer"),
    [
        (b"", "empty receipt", ""),
        (b"[]", "receipt is not a JSON object", ""),
        (_receipt(version=0), "receipt alert_id/version invalid", "/version"),
        (_receipt(version=True), "receipt alert_id/version invalid", "/version"),
        (_receipt(alert_id=7), "receipt alert_id/version invalid", "/version"),
        (_receipt("failed", fallback="fax"), 'receipt fallback "fax" unknown', "/fallback"),
        (_receipt(channel="fax"), 'receipt channel "fax" unknown', "/channel"),
        (_receipt(outcome="lost"), 'receipt outcome "lost" unknown', "/outcome"),
    ],
)
def test_a_receipt_that_cannot_be_tallied_says_why_and_where(
    raw: bytes, message: str, pointer: str
) -> None:
    with pytest.raises(MalformedInput) as refused:
        parse_receipt(raw)
    assert (refused.value.message, refused.value.pointer) == (message, pointer)


def test_fallback_routes_count_each_move_and_name_an_unspecified_reason() -> None:
    tally = Tally()
    moved = Receipt("gov.vn/T1", 1, "oa", "failed", None, fallback="sms")
    tally.add(moved)
    tally.add(moved)
    tally.add(Receipt("gov.vn/T1", 1, "oa", "failed", "http_400", fallback="sms"))
    assert dict(tally.fallbacks) == {"oa>sms unspecified": 2, "oa>sms http_400": 1}
    assert (tally.failed, tally.delivered) == (0, 0)
