"""What ``decide`` carries from the alert into its decision, and the rejection record it
writes (pure, no broker). The rule table (every rejection code) is ``test_ingest_rules.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import h3
import orjson
import pytest

import streams.ingest.core as core
from streams.errors import RejectionCode
from streams.ingest import Accepted, Duplicate, Rejected, decide, rejection_record
from streams.ingest.agencies import Agency, AgencyRegistry
from streams.ingest.lifecycle import LifecycleState
from streams.regions import circle_cells, registry
from streams.schemas import validator

NOW = datetime(2026, 9, 6, 1, 0, tzinfo=UTC)
QN_CELLS = tuple(h3.grid_disk(h3.latlng_to_cell(21.0, 107.3, 5), 1))
# a province agency that may send Actual and Severe, inside VN-22 and its cells
AGENCIES = AgencyRegistry.of(
    Agency(
        "qn.gov.vn",
        "Quảng Ninh",
        {},
        ("VN-22",),
        ("Actual",),
        "Severe",
        jurisdiction_cells=QN_CELLS,
    )
)


def _doc(identifier: str = "X-1", msg_type: str = "Alert", **info: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "category": ["Met", "Safety"],
        "event": "Bão",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Likely",
        "headline": "Bão số 3",
        "area": [{"areaDesc": "ven biển", "regions": ["VN-22"]}],
    }
    block.update(info)
    return {
        "identifier": identifier,
        "sender": "qn.gov.vn",
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": msg_type,
        "scope": "Public",
        "info": [block],
    }


def _decide(doc: dict[str, Any], **kw: Any) -> Accepted | Duplicate | Rejected:
    args: dict[str, Any] = {"regions": registry(), "partitions": 2, "max_bytes": 1 << 16}
    args["now"] = NOW
    args.update(kw)
    return decide(orjson.dumps(doc), **args)


def test_the_accepted_alert_keeps_the_agencys_texts_references_and_language() -> None:
    state = LifecycleState()
    first = _decide(_doc(), state=state)
    assert isinstance(first, Accepted)
    state.record(first.plan, "Alert", first.alert)
    references = "qn.gov.vn,X-1,2026-09-06T08:00:00+07:00"
    update = {
        **_doc("X-2", "Update", description="Gió giật cấp 12", instruction="Vào nơi trú ẩn"),
        "references": references,
    }
    update["info"].append({**update["info"][0], "language": "en-US", "headline": "Typhoon 3"})
    decision = _decide(update, state=state)
    assert isinstance(decision, Accepted)
    assert decision.alert.references == references
    vi, en = decision.alert.infos
    assert (vi.language, vi.description, vi.instruction) == (
        "vi-VN",
        "Gió giật cấp 12",
        "Vào nơi trú ẩn",
    )
    assert (en.language, en.headline) == ("en-US", "Typhoon 3")
    assert first.alert.infos[0].description is None and first.alert.infos[0].instruction is None


@pytest.mark.parametrize(
    ("status", "test_only"), [("Actual", False), ("Exercise", True), ("Test", True)]
)
def test_only_an_actual_alert_reaches_the_public(status: str, test_only: bool) -> None:
    decision = _decide({**_doc(), "status": status})
    assert isinstance(decision, Accepted)
    assert decision.alert.test_only is test_only
    assert {o.test_only for o in decision.orders} == {test_only}


def test_orders_carry_the_shapes_cells_at_the_configured_resolution_and_the_categories() -> None:
    area = {"areaDesc": "Hạ Long", "circle": ["21.0,107.3 3"]}
    decision = _decide(_doc(area=[area]), h3_resolution=8)
    assert isinstance(decision, Accepted)
    for order in decision.orders:
        assert set(h3.uncompact_cells(list(order.cells), 8)) == set(circle_cells(21.0, 107.3, 3, 8))
        assert order.categories == ("Met", "Safety")


def test_a_republish_is_a_duplicate_naming_its_sender_and_identifier() -> None:
    state = LifecycleState()
    first = _decide(_doc(), state=state)
    assert isinstance(first, Accepted)
    state.record(first.plan, "Alert", first.alert)
    again = _decide(_doc(), state=state)
    assert isinstance(again, Duplicate)
    assert (again.sender, again.identifier) == ("qn.gov.vn", "X-1")
    record = orjson.loads(rejection_record(again, b"{}", topic="t", partition=1, offset=9, now=NOW))
    validator("rejection").validate(record)
    assert record["code"] == "duplicate"
    assert record["message"] == "already accepted as qn.gov.vn/X-1 version 1"
    assert (record["pointer"], record["errors"]) == ("", [])
    assert (record["sender"], record["identifier"]) == ("qn.gov.vn", "X-1")


def test_a_rejection_names_the_sender_and_identifier_it_read() -> None:
    decision = _decide(_doc(area=[{"areaDesc": "x", "regions": ["VN-99"]}]))
    assert isinstance(decision, Rejected)
    assert (decision.sender, decision.identifier) == ("qn.gov.vn", "X-1")
    record = orjson.loads(rejection_record(decision, b"{}", topic="t", partition=0, offset=1))
    assert (record["sender"], record["identifier"]) == ("qn.gov.vn", "X-1")


def test_without_signatures_the_sender_must_still_be_registered_and_within_its_rights() -> None:
    assert isinstance(_decide(_doc(), agencies=AGENCIES, require_signatures=False), Accepted)
    stranger = _decide(
        {**_doc(), "sender": "other.gov.vn"}, agencies=AGENCIES, require_signatures=False
    )
    assert isinstance(stranger, Rejected)
    assert stranger.code is RejectionCode.UNKNOWN_SENDER
    outside = _doc(area=[{"areaDesc": "Hà Nội", "regions": ["VN-01"]}])
    refused = _decide(outside, agencies=AGENCIES, require_signatures=False)
    assert isinstance(refused, Rejected)
    assert (refused.code, refused.pointer) == (
        RejectionCode.OUT_OF_JURISDICTION,
        "/info/0/area/0/regions/0",
    )


def test_a_shape_outside_the_agencys_cells_is_refused_at_info() -> None:
    hanoi = {"areaDesc": "Hà Nội", "circle": ["21.03,105.85 2"]}
    refused = _decide(_doc(area=[hanoi]), agencies=AGENCIES, require_signatures=False)
    assert isinstance(refused, Rejected)
    assert (refused.code, refused.pointer) == (RejectionCode.OUT_OF_JURISDICTION, "/info")


def test_without_a_clock_the_decision_uses_the_current_utc_time() -> None:
    fresh = decide(
        orjson.dumps(_doc(expires="2099-01-01T00:00:00+07:00")),
        regions=registry(),
        partitions=1,
        max_bytes=1 << 16,
    )
    assert isinstance(fresh, Accepted)
    assert datetime.fromisoformat(fresh.alert.accepted_at).tzinfo is not None


def test_no_record_at_all_is_an_empty_record() -> None:
    decision = decide(None, regions=registry(), partitions=1, max_bytes=1 << 16)
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.MALFORMED
    assert "empty" in decision.message
    record = orjson.loads(rejection_record(decision, None, topic="t", partition=0, offset=0))
    assert (record["size"], record["excerpt"]) == (0, "")
    assert datetime.fromisoformat(record["rejected_at"]).tzinfo is not None


def test_a_bug_met_by_an_alert_keeps_it_as_internal_with_its_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(core, "resolve_targets", broken)
    decision = _decide(_doc())
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.INTERNAL
    assert decision.message == "RuntimeError: boom"
    assert (decision.sender, decision.identifier) == ("qn.gov.vn", "X-1")


def test_the_excerpt_is_the_start_of_the_record_with_undecodable_bytes_replaced() -> None:
    raw = b'{"identifier": "\xff\xfe' + b"x" * 600
    decision = decide(raw, regions=registry(), partitions=1, max_bytes=1 << 16)
    assert isinstance(decision, Rejected)
    record = orjson.loads(rejection_record(decision, raw, topic="t", partition=0, offset=0))
    assert record["excerpt"].startswith('{"identifier": "\ufffd\ufffdxxx')
    assert record["size"] == len(raw)
