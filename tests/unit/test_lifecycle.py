from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.errors import Expired, RejectionCode, UnknownReference
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.lifecycle import LifecycleState, Plan, Reference, parse_references
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
    assert parse_references(value) == [
        Reference("a.vn", "X-1", "2026-09-06T08:00:00+07:00"),
        Reference("b.vn", "Y-2", "2026-09-06T09:00:00+07:00"),
    ]


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
    third = _run(state, _msg("T-3", "Update", "nchmf.gov.vn,T-2,2026-09-06T08:00:00+07:00"))
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


@pytest.mark.parametrize(
    "bad",
    [",X-1,2026-09-06T08:00:00+07:00", "a.vn,,2026-09-06T08:00:00+07:00", "a.vn,X-1,", "a.vn,X-1"],
)
def test_a_reference_missing_a_part_is_skipped(bad: str) -> None:
    good = "b.vn,Y-2,2026-09-06T09:00:00+07:00"
    assert parse_references(f"{bad} {good}") == [
        Reference("b.vn", "Y-2", "2026-09-06T09:00:00+07:00")
    ]


def _plan(state: LifecycleState, identifier: str, msg_type: str = "Alert", **over: Any) -> Any:
    args: dict[str, Any] = {
        "sender": "s.vn",
        "identifier": identifier,
        "status": "Actual",
        "sent": "2026-09-06T08:00:00+07:00",
        "msg_type": msg_type,
        "references": None,
        "expires": [],
        "now": NOW,
    }
    args.update(over)
    return state.plan(**args)


def test_a_message_without_references_is_refused_at_references() -> None:
    state = LifecycleState()
    state.record(_plan(state, "T-1"), "Alert")
    for references in (None, ""):
        with pytest.raises(UnknownReference) as caught:
            _plan(state, "T-2", "Update", references=references)
        assert caught.value.pointer == "/references"
        assert "references is required for this msgType" in caught.value.message


def test_unknown_references_are_quoted_in_the_message() -> None:
    references = " ".join(f"s.vn,N-{i:03},2026-09-06T08:00:00+07:00" for i in range(20))
    with pytest.raises(UnknownReference) as caught:
        _plan(LifecycleState(), "T-2", "Update", references=references)
    assert caught.value.pointer == "/references"
    assert caught.value.message == 'reference "s.vn/N-000": sender "s.vn" has no accepted message'


SENT = "2026-09-06T08:00:00+07:00"


@pytest.mark.parametrize(
    ("reference", "part"),
    [
        ("s.vn,T-1,2026-09-06T08:00:01+07:00", 'sent "2026-09-06T08:00:01+07:00" differs'),
        (f"x.vn,T-1,{SENT}", 'sender "x.vn" differs; identifier "T-1" was accepted from "s.vn"'),
        (f"s.vn,T-9,{SENT}", 'identifier "T-9" names no accepted message of sender "s.vn"'),
    ],
)
def test_a_reference_must_match_the_whole_triple_and_names_the_part_that_differs(
    reference: str, part: str
) -> None:
    state = LifecycleState()
    state.record(_plan(state, "T-1"), "Alert")
    with pytest.raises(UnknownReference, match=re.escape(part)):
        _plan(state, "T-2", "Update", references=reference)
    # the same instant in another offset is the same sent
    assert (
        _plan(state, "T-2", "Update", references="s.vn,T-1,2026-09-06T01:00:00+00:00").version == 2
    )


def test_references_naming_two_lineages_are_refused() -> None:
    state = LifecycleState()
    state.record(_plan(state, "T-1"), "Alert")
    state.record(_plan(state, "T-2"), "Alert")
    with pytest.raises(UnknownReference, match="name 2 lineages"):
        _plan(state, "T-3", "Update", references=f"s.vn,T-1,{SENT} s.vn,T-2,{SENT}")


def test_a_replayed_older_record_never_lowers_the_version_or_what_was_told() -> None:
    state = LifecycleState()
    v1 = _run(state, _msg("T-1"))
    v2 = _run(state, _msg("T-2", "Update", _ref("T-1"), headline="Bão mạnh lên"))
    assert isinstance(v1, Accepted) and isinstance(v2, Accepted)
    told_v2 = state.told("nchmf.gov.vn/T-1")
    state.apply(v1.alert)  # a replica replays the whole topic again, oldest first
    assert state.lineages["nchmf.gov.vn/T-1"].version == 2
    assert state.told("nchmf.gov.vn/T-1") == told_v2
    v3 = _run(state, _msg("T-3", "Update", _ref("T-2"), headline="Bão mạnh lên"))
    assert isinstance(v3, Accepted) and v3.alert.version == 3


def test_an_update_that_changes_only_the_instruction_is_news() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1", instruction="Ở trong nhà"))
    same = _run(state, _msg("T-2", "Update", _ref("T-1"), instruction="Ở trong nhà"))
    moved = _run(state, _msg("T-3", "Update", _ref("T-2"), instruction="Sơ tán ngay"))
    assert isinstance(same, Accepted) and isinstance(moved, Accepted)
    assert {o.changed for o in same.orders} == {False}
    assert {o.changed for o in moved.orders} == {True}


def test_an_info_expiring_at_the_arrival_instant_has_expired() -> None:
    with pytest.raises(Expired, match="latest 2026-09-06T01:00:00"):
        _plan(LifecycleState(), "T-1", expires=[NOW - timedelta(hours=1), NOW])
    assert _plan(LifecycleState(), "T-1", expires=[NOW, NOW + timedelta(seconds=1)]).version == 1


def test_plans_name_the_message_its_lineage_and_version() -> None:
    state = LifecycleState()
    first = _plan(state, "T-1")
    sent = "2026-09-06T08:00:00+07:00"
    assert first == Plan("s.vn/T-1", "s.vn/T-1", 1, False, "s.vn", "Actual", sent)
    state.record(first, "Alert")
    update = _plan(state, "T-2", "Update", references=f"s.vn,T-1,{sent}")
    assert update == Plan("s.vn/T-2", "s.vn/T-1", 2, False, "s.vn", "Actual", sent)
    state.record(update, "Update")
    ack = _plan(state, "T-3", "Ack", references=f"s.vn,T-2,{sent}")
    # joins the lineage, adds no version
    assert ack == Plan("s.vn/T-3", "s.vn/T-1", 2, False, "s.vn", "Actual", sent)
    assert _plan(state, "T-2") == Plan("s.vn/T-2", "s.vn/T-1", 2, True, "s.vn", "Actual", sent)


def test_nothing_is_known_of_a_lineage_never_recorded() -> None:
    state = LifecycleState()
    assert not state.told("s.vn/T-1")
    assert not state.priority("s.vn/T-1")
    assert not state.is_cancelled("s.vn/T-1")
    state.record(_plan(state, "T-1"), "Alert")
    assert not state.is_cancelled("s.vn/T-1")


def test_an_ack_after_a_cancel_keeps_the_lineage_cancelled() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    _run(state, {**_msg("T-9", "Cancel", _ref("T-1")), "info": []})
    ack = _run(state, {**_msg("T-10", "Ack", _ref("T-9")), "info": []})
    assert isinstance(ack, Accepted)
    late = _run(state, _msg("T-11", "Update", _ref("T-1")))
    assert isinstance(late, Rejected)
    assert late.code is RejectionCode.ALREADY_CANCELLED


def test_an_update_is_compared_with_the_latest_version_not_with_an_ack_in_between() -> None:
    state = LifecycleState()
    _run(state, _msg("T-1"))
    worse = _run(state, _msg("T-2", "Update", _ref("T-1"), headline="Bão mạnh lên"))
    assert isinstance(worse, Accepted)
    assert {o.changed for o in worse.orders} == {True}
    ack = _run(state, {**_msg("T-3", "Ack", _ref("T-2")), "info": []})
    assert isinstance(ack, Accepted)
    # same words as version 2, a wider area: nothing new to tell those already served
    again = _run(
        state,
        _msg(
            "T-4",
            "Update",
            _ref("T-2"),
            headline="Bão mạnh lên",
            area=[{"areaDesc": "wider", "regions": ["VN-22", "VN-31"]}],
        ),
    )
    assert isinstance(again, Accepted)
    assert {o.changed for o in again.orders} == {False}


def test_replaying_the_accepted_records_rebuilds_the_state_the_live_agent_had() -> None:
    live = LifecycleState()
    accepted = []
    for doc in [
        _msg("T-1"),
        _msg("T-2", "Update", _ref("T-1"), headline="Bão mạnh lên"),
        {**_msg("T-3", "Ack", _ref("T-2")), "info": []},
        _msg("U-1", severity="Severe", urgency="Expected"),
        {**_msg("U-2", "Cancel", _ref("U-1")), "info": []},
    ]:
        decision = _run(live, doc)
        assert isinstance(decision, Accepted)
        accepted.append(decision)
    replica = LifecycleState()
    for decision in accepted:
        assert replica.apply(decision.alert) == decision.plan
    assert replica.messages == live.messages
    assert replica.lineages == live.lineages
    # a record replayed twice (compaction keeps it, a restart reads it again) changes nothing
    replica.apply(accepted[1].alert)
    assert replica.lineages == live.lineages
