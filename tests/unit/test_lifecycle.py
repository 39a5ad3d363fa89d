from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.errors import RejectionCode
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.lifecycle import LifecycleState, parse_references
from streams.records import TaskKind
from streams.regions import registry

NOW = datetime(2026, 9, 6, 1, 0, tzinfo=UTC)


def _msg(
    identifier: str, msg_type: str = "Alert", references: str | None = None, **info: Any
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "category": ["Met"],
        "event": "Bão",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "headline": "Bão số 3",
        "area": [{"areaDesc": "ven biển", "regions": ["VN-22"]}],
    }
    block.update(info)
    doc: dict[str, Any] = {
        "identifier": identifier,
        "sender": "nchmf.gov.vn",
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": msg_type,
        "scope": "Public",
        "info": [block],
    }
    if references is not None:
        doc["references"] = references
    return doc


def _ref(identifier: str) -> str:
    return f"nchmf.gov.vn,{identifier},2026-09-06T08:00:00+07:00"


def _run(state: LifecycleState, doc: dict[str, Any]) -> Accepted | Duplicate | Rejected:
    decision = decide(
        orjson.dumps(doc), regions=registry(), partitions=2, max_bytes=1 << 16, state=state, now=NOW
    )
    if isinstance(decision, Accepted):  # what the agent does once the decision is on Kafka
        state.record(decision.plan, decision.alert.msg_type, decision.alert)
    return decision


def test_references_are_sender_identifier_sent_triples() -> None:
    value = "a.vn,X-1,2026-09-06T08:00:00+07:00 b.vn,Y-2,2026-09-06T09:00:00+07:00 junk"
    assert parse_references(value) == [("a.vn", "X-1"), ("b.vn", "Y-2")]


def test_republish_is_a_duplicate_with_no_orders() -> None:
    state = LifecycleState()
    first = _run(state, _msg("T-1"))
    assert isinstance(first, Accepted)
    again = _run(state, _msg("T-1"))
    assert isinstance(again, Duplicate)
    assert again.plan.lineage == "nchmf.gov.vn/T-1"


def test_update_joins_the_lineage_with_the_next_version() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    update = _run(state, _msg("T-2", "Update", _ref("T-1")))
    assert isinstance(update, Accepted)
    assert (update.alert.alert_id, update.alert.version) == ("nchmf.gov.vn/T-1", 2)
    assert update.alert.message_id == "nchmf.gov.vn/T-2"
    assert {o.kind for o in update.orders} == {TaskKind.UPDATE}
    third = _run(state, _msg("T-3", "Update", "nchmf.gov.vn,T-2,2026-09-06T08:30:00+07:00"))
    assert isinstance(third, Accepted)
    assert (third.alert.alert_id, third.alert.version) == ("nchmf.gov.vn/T-1", 3)


def test_cancel_orders_cancel_tasks_at_the_alerts_priority_and_marks_the_lineage() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    cancel = _run(state, {**_msg("T-9", "Cancel", _ref("T-1")), "info": []})
    assert isinstance(cancel, Accepted)
    assert {(o.kind, o.priority.value, o.version) for o in cancel.orders} == {
        (TaskKind.CANCEL, "extreme", 2)
    }
    assert state.is_cancelled("nchmf.gov.vn/T-1")
    late = _run(state, _msg("T-10", "Update", _ref("T-1")))
    assert isinstance(late, Rejected)
    assert late.code is RejectionCode.ALREADY_CANCELLED


def test_cancel_tasks_can_be_turned_off_and_never_go_to_exercises() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    cancel = {**_msg("T-9", "Cancel", _ref("T-1")), "info": []}
    quiet = decide(
        orjson.dumps(cancel),
        regions=registry(),
        partitions=2,
        max_bytes=1 << 16,
        state=state,
        now=NOW,
        cancel_tasks=False,
    )
    assert isinstance(quiet, Accepted)
    assert quiet.orders == ()
    drill = LifecycleState()
    _run(drill, {**_msg("E-1"), "status": "Exercise"})
    exercise_cancel = _run(drill, {**cancel, "references": _ref("E-1"), "status": "Exercise"})
    assert isinstance(exercise_cancel, Accepted)
    assert exercise_cancel.orders == ()


def test_update_that_changes_nothing_told_is_marked_unchanged() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    same = _run(
        state,
        _msg(
            "T-2",
            "Update",
            _ref("T-1"),
            area=[{"areaDesc": "wider", "regions": ["VN-22", "VN-31"]}],
        ),
    )
    assert isinstance(same, Accepted)
    assert {o.changed for o in same.orders} == {False}
    worse = _run(state, _msg("T-3", "Update", _ref("T-2"), headline="Bão mạnh lên"))
    assert isinstance(worse, Accepted)
    assert {o.changed for o in worse.orders} == {True}


def test_update_of_an_unknown_alert_is_rejected() -> None:
    decision = _run(LifecycleState(), _msg("T-2", "Update", _ref("NOPE")))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.UNKNOWN_REFERENCE
    assert decision.pointer == "/references"
    missing = _run(LifecycleState(), _msg("T-3", "Cancel"))
    assert isinstance(missing, Rejected)
    assert missing.code is RejectionCode.UNKNOWN_REFERENCE


def test_alert_expired_on_arrival_is_rejected() -> None:
    past = (NOW - timedelta(hours=1)).isoformat()
    decision = _run(LifecycleState(), _msg("T-1", expires=past))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.EXPIRED
    future = (NOW + timedelta(hours=1)).isoformat()
    fresh = _run(LifecycleState(), _msg("T-2", expires=future))
    assert isinstance(fresh, Accepted)
    assert fresh.orders[0].expires == future


@pytest.mark.parametrize("status", ["Draft", "System"])
def test_statuses_that_reach_nobody_are_accepted_without_orders(status: str) -> None:
    decision = _run(LifecycleState(), {**_msg("T-1"), "status": status})
    assert isinstance(decision, Accepted)
    assert decision.orders == ()


@pytest.mark.parametrize("msg_type", ["Ack", "Error"])
def test_ack_and_error_join_the_lineage_silently(msg_type: str) -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    decision = _run(state, _msg("T-5", msg_type, _ref("T-1")))
    assert isinstance(decision, Accepted)
    assert decision.orders == ()
    assert decision.alert.version == 1


def test_cancel_needs_no_info_block() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    cancel = {key: value for key, value in _msg("T-2", "Cancel", _ref("T-1")).items()}
    del cancel["info"]
    decision = _run(state, cancel)
    assert isinstance(decision, Accepted)
    assert state.is_cancelled("nchmf.gov.vn/T-1")
    update_without_info = _msg("T-3", "Update", _ref("T-1"))
    del update_without_info["info"]
    rejected = _run(LifecycleState(), update_without_info)
    assert isinstance(rejected, Rejected)
    assert rejected.code is RejectionCode.SCHEMA
