from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import RejectionCode
from streams.ingest import Accepted, Rejected, decide, rejection_record
from streams.records import Priority
from streams.regions import registry
from streams.schemas import validator


def _alert(**info: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "category": ["Met"],
        "event": "Bão",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "headline": "Bão số 3",
        "area": [{"areaDesc": "ven biển", "regions": ["VN-22", "VN-31"]}],
    }
    block.update(info)
    return {
        "identifier": "X-1",
        "sender": "nchmf.gov.vn",
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": [block],
    }


def _decide(doc: Any, partitions: int = 4) -> Accepted | Rejected:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return decide(raw, regions=registry(), partitions=partitions, max_bytes=64 * 1024)


def test_valid_alert_gives_one_order_per_partition() -> None:
    decision = _decide(_alert(), partitions=6)
    assert isinstance(decision, Accepted)
    assert decision.alert.alert_id == "nchmf.gov.vn/X-1"
    assert decision.alert.priority is Priority.EXTREME
    assert [o.partition for o in decision.orders] == list(range(6))
    validator("accepted_alert").validate(orjson.loads(decision.alert.to_json()))
    validator("fanout_order").validate(orjson.loads(decision.orders[0].to_json()))


@pytest.mark.parametrize(
    ("severity", "urgency", "priority"),
    [
        ("Extreme", "Future", "extreme"),
        ("Severe", "Immediate", "extreme"),
        ("Severe", "Expected", "severe"),
        ("Moderate", "Immediate", "routine"),
        ("Minor", "Past", "routine"),
        ("Unknown", "Unknown", "routine"),
    ],
)
def test_priority_table(severity: str, urgency: str, priority: str) -> None:
    decision = _decide(_alert(severity=severity, urgency=urgency))
    assert isinstance(decision, Accepted)
    assert decision.alert.priority == priority


@pytest.mark.parametrize(
    ("raw", "code", "pointer"),
    [
        (b"", RejectionCode.MALFORMED, ""),
        (b"   ", RejectionCode.MALFORMED, ""),
        (b"\xff\xfe\x00", RejectionCode.MALFORMED, ""),
        (b"[1, 2]", RejectionCode.MALFORMED, ""),
        (b"{", RejectionCode.MALFORMED, ""),
        (b'{"identifier": "x"}', RejectionCode.SCHEMA, "/sender"),
        (b"x" * 70_000, RejectionCode.TOO_LARGE, ""),
    ],
)
def test_bad_input_is_rejected_with_its_code(raw: bytes, code: RejectionCode, pointer: str) -> None:
    decision = _decide(raw)
    assert isinstance(decision, Rejected)
    assert decision.code is code
    assert decision.pointer == pointer


def test_schema_violation_points_at_the_field() -> None:
    decision = _decide(_alert(severity="Catastrophic"))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.SCHEMA
    assert decision.pointer == "/info/0/severity"
    assert decision.sender == "nchmf.gov.vn"


def test_unknown_region_points_at_the_code() -> None:
    decision = _decide(_alert(area=[{"areaDesc": "x", "regions": ["VN-22", "VN-02"]}]))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.UNKNOWN_REGION
    assert decision.pointer == "/info/0/area/0/regions/1"


def test_time_without_zone_is_a_schema_error() -> None:
    decision = _decide(_alert(expires="2026-09-07T08:00:00"))
    assert isinstance(decision, Rejected)
    assert decision.pointer == "/info/0/expires"


def test_exercise_reaches_only_the_test_audience_and_draft_nobody() -> None:
    exercise = _decide({**_alert(), "status": "Exercise"})
    assert isinstance(exercise, Accepted)
    assert all(o.test_only for o in exercise.orders)
    draft = _decide({**_alert(), "status": "Draft"})
    assert isinstance(draft, Accepted)
    assert draft.orders == ()


def test_rejection_record_follows_the_schema_with_a_bounded_excerpt() -> None:
    raw = b"<" * 5000
    decision = _decide(raw)
    assert isinstance(decision, Rejected)
    record = orjson.loads(rejection_record(decision, raw, topic="t", partition=0, offset=7))
    validator("rejection").validate(record)
    assert len(record["excerpt"]) <= 512
    assert record["size"] == 5000


@given(st.binary(max_size=2048))
def test_no_bytes_raise_out_of_decide(raw: bytes) -> None:
    assert isinstance(_decide(raw), Accepted | Rejected)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_no_json_value_raises_out_of_decide(doc: Any) -> None:
    assert isinstance(_decide(orjson.dumps(doc)), Accepted | Rejected)
