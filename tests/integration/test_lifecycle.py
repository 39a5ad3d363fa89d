"""The CAP lifecycle on the real broker: re-publish, Update, Cancel, expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.integration.conftest import LiveLoa, alert

pytestmark = pytest.mark.integration

SENDER = "test.agency.vn"


def _ref(identifier: str) -> str:
    return f"{SENDER},{identifier},2026-11-23T08:00:00+07:00"


async def test_republish_is_a_duplicate_and_adds_no_tasks(live: LiveLoa) -> None:
    identifier = f"D-{uuid.uuid4().hex[:8]}"
    raw = orjson.dumps(alert(identifier, ["VN-44"]))
    await live.publish(raw)
    outcome, record = await live.decision(SENDER, identifier)
    assert outcome == "accepted"
    await live.fanned_out(record["alert_id"])
    before, _ = await live.tasks(record["alert_id"], "extreme")
    for _ in range(2):
        offset = await live.publish(raw)
        outcome, dup = await live.decision(SENDER, identifier, offset=offset)
        assert (outcome, dup["code"]) == ("duplicate", "duplicate")
    # a later alert is fanned out, so anything the duplicates had caused would be there by now
    await _accepted_and_done(live, alert(f"N-{uuid.uuid4().hex[:8]}", ["VN-44"]))
    after, _ = await live.tasks(record["alert_id"], "extreme")
    assert after == before
    assert set(before) == live.expected(["VN-44"])


async def test_update_is_version_two_of_the_lineage(live: LiveLoa) -> None:
    original = f"U-{uuid.uuid4().hex[:8]}"
    first = await _accepted_and_done(live, alert(original, ["VN-42"]))
    update = alert(f"{original}-u1", ["VN-42", "VN-40"], headline="Cập nhật: lũ lên nhanh")
    update["msgType"] = "Update"
    update["references"] = _ref(original)
    second = await _accepted_and_done(live, update)
    assert (second["alert_id"], second["version"]) == (first["alert_id"], 2)
    assert second["message_id"] == f"{SENDER}/{original}-u1"
    _, docs = await live.tasks(first["alert_id"], "extreme")
    v2 = {d["recipient_id"]: d["kind"] for d in docs if d["version"] == 2}
    # the headline changed: those told in version 1 get the update, the newly targeted the alert
    assert {r for r, k in v2.items() if k == "update"} == live.expected(["VN-42"])
    assert {r for r, k in v2.items() if k == "alert"} == live.expected(["VN-40"])
    assert len(v2) == sum(1 for d in docs if d["version"] == 2)


async def test_update_that_changes_nothing_reaches_only_new_recipients(live: LiveLoa) -> None:
    original = f"W-{uuid.uuid4().hex[:8]}"
    first = await _accepted_and_done(live, alert(original, ["VN-42"]))
    wider = alert(f"{original}-u1", ["VN-42", "VN-40"])  # same words, wider area
    wider["msgType"] = "Update"
    wider["references"] = _ref(original)
    await _accepted_and_done(live, wider)
    _, docs = await live.tasks(first["alert_id"], "extreme")
    v2 = [d for d in docs if d["version"] == 2]
    assert {d["recipient_id"] for d in v2} == live.expected(["VN-40"])
    assert {d["kind"] for d in v2} == {"alert"}


async def test_cancel_is_accepted_and_later_updates_are_refused(live: LiveLoa) -> None:
    original = f"C-{uuid.uuid4().hex[:8]}"
    first = await _accepted_and_done(live, alert(original, ["VN"]))
    cancel = {
        "identifier": f"{original}-x",
        "sender": SENDER,
        "sent": "2026-11-23T09:00:00+07:00",
        "status": "Actual",
        "msgType": "Cancel",
        "scope": "Public",
        "references": _ref(original),
    }
    await live.publish(orjson.dumps(cancel))
    outcome, record = await live.decision(SENDER, f"{original}-x")
    assert outcome == "accepted"
    assert record["alert_id"] == first["alert_id"]
    late = alert(f"{original}-late", ["VN-22"])
    late["msgType"] = "Update"
    late["references"] = _ref(original)
    await live.publish(orjson.dumps(late))
    outcome, record = await live.decision(SENDER, f"{original}-late")
    assert (outcome, record["code"]) == ("rejected", "already_cancelled")


async def test_cancel_right_after_the_alert_stops_what_remains(live: LiveLoa) -> None:
    original = f"S-{uuid.uuid4().hex[:8]}"
    await live.publish(orjson.dumps(alert(original, ["VN"])))
    cancel = {
        "identifier": f"{original}-x",
        "sender": SENDER,
        "sent": "2026-11-23T09:00:00+07:00",
        "status": "Actual",
        "msgType": "Cancel",
        "scope": "Public",
        "references": _ref(original),
    }
    await live.publish(orjson.dumps(cancel))
    progress = await live.fanned_out(f"{SENDER}/{original}")
    await live.fanned_out(f"{SENDER}/{original}", version=2)
    _, docs = await live.tasks(f"{SENDER}/{original}", "extreme")
    alerted = [d["recipient_id"] for d in docs if d["version"] == 1]
    cancelled = [d["recipient_id"] for d in docs if d["version"] == 2]
    # whatever was emitted before the Cancel arrived is on the topic exactly once, every order
    # that saw the Cancel says so, and exactly those alerted get the cancel
    assert len(alerted) == sum(p.emitted for p in progress.values()) == len(set(alerted))
    assert sorted(cancelled) == sorted(alerted)
    assert {d["kind"] for d in docs if d["version"] == 2} <= {"cancel"}
    for p in progress.values():
        assert p.stopped in (None, "cancelled")
        if p.stopped == "cancelled":
            assert p.emitted < p.targeted or p.targeted == 0


async def test_update_or_cancel_of_an_unknown_alert_is_rejected(live: LiveLoa) -> None:
    identifier = f"X-{uuid.uuid4().hex[:8]}"
    orphan = alert(identifier, ["VN-22"])
    orphan["msgType"] = "Update"
    orphan["references"] = _ref("NEVER-SEEN")
    await live.publish(orjson.dumps(orphan))
    outcome, record = await live.decision(SENDER, identifier)
    assert (outcome, record["code"], record["pointer"]) == (
        "rejected",
        "unknown_reference",
        "/references",
    )


async def test_alert_expired_on_arrival_is_rejected(live: LiveLoa) -> None:
    identifier = f"E-{uuid.uuid4().hex[:8]}"
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    await live.publish(orjson.dumps(alert(identifier, ["VN-22"], expires=past)))
    outcome, record = await live.decision(SENDER, identifier)
    assert (outcome, record["code"]) == ("rejected", "expired")


async def _accepted_and_done(live: LiveLoa, doc: dict[str, object]) -> dict[str, object]:
    await live.publish(orjson.dumps(doc))
    outcome, record = await live.decision(SENDER, str(doc["identifier"]))
    assert outcome == "accepted", record
    await live.fanned_out(str(record["alert_id"]), version=int(record["version"]))
    return record
