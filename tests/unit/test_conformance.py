"""CAP 1.2 conformance, fail closed: required elements in both formats, no audience-widening
defaults, references triples, scope rules, CAP 1.1 mapped only where exact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.errors import RejectionCode
from streams.ingest import Accepted, Rejected, decide
from streams.ingest.cap import CAP_NAMESPACE
from streams.regions import registry

CAP_1_1 = "urn:oasis:names:tc:emergency:cap:1.1"

_ALERT_ELEMENTS = {
    "identifier": "T-1",
    "sender": "nchmf.gov.vn",
    "sent": "2026-09-06T08:00:00+07:00",
    "status": "Actual",
    "msgType": "Alert",
    "scope": "Public",
}
_INFO_ELEMENTS = {
    "category": "Met",
    "event": "Bão",
    "urgency": "Immediate",
    "severity": "Extreme",
    "certainty": "Likely",
    "headline": "Bão số 3",
}
_AREA = (
    "<area><areaDesc>x</areaDesc>"
    "<geocode><valueName>VN</valueName><value>VN-22</value></geocode></area>"
)


def _json(*, drop: str = "", drop_info: str = "", **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {k: v for k, v in _INFO_ELEMENTS.items() if k != drop_info}
    if "category" in info:
        info["category"] = [info["category"]]
    info["area"] = [{"areaDesc": "x", "regions": ["VN-22"]}]
    doc: dict[str, Any] = {k: v for k, v in _ALERT_ELEMENTS.items() if k != drop}
    doc["info"] = [info]
    doc.update(extra)
    return doc


def _xml(
    *, drop: str = "", drop_info: str = "", namespace: str = CAP_NAMESPACE, extra: str = ""
) -> bytes:
    head = "".join(f"<{k}>{v}</{k}>" for k, v in _ALERT_ELEMENTS.items() if k != drop)
    info = "".join(f"<{k}>{v}</{k}>" for k, v in _INFO_ELEMENTS.items() if k != drop_info)
    return f'<alert xmlns="{namespace}">{head}{extra}<info>{info}{_AREA}</info></alert>'.encode()


def _decide(raw: bytes | dict[str, Any]) -> Accepted | Rejected:
    if isinstance(raw, dict):
        raw = orjson.dumps(raw)
    decision = decide(raw, regions=registry(), partitions=2, max_bytes=1 << 16)
    assert not isinstance(decision, tuple)
    return decision  # type: ignore[return-value]


def test_complete_alert_in_both_formats_is_accepted() -> None:
    assert isinstance(_decide(_json()), Accepted)
    assert isinstance(_decide(_xml()), Accepted)


@pytest.mark.parametrize("element", ["status", "msgType", "scope"])
def test_json_alert_without_status_msgtype_or_scope_is_rejected_naming_it(element: str) -> None:
    decision = _decide(_json(drop=element))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.SCHEMA
    assert decision.pointer == f"/{element}"
    assert element in decision.message


@pytest.mark.parametrize("element", ["status", "msgType", "scope"])
def test_cap_alert_without_status_msgtype_or_scope_is_rejected_naming_it(element: str) -> None:
    decision = _decide(_xml(drop=element))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.SCHEMA
    assert decision.pointer == f"/alert/{element}"
    assert element in decision.message


@pytest.mark.parametrize("element", ["identifier", "sender", "sent"])
def test_alert_without_identifier_sender_or_sent_is_rejected_in_both_formats(element: str) -> None:
    for decision, pointer in (
        (_decide(_json(drop=element)), f"/{element}"),
        (_decide(_xml(drop=element)), f"/alert/{element}"),
    ):
        assert isinstance(decision, Rejected)
        assert (decision.code, decision.pointer) == (RejectionCode.SCHEMA, pointer)


@pytest.mark.parametrize("element", list(_INFO_ELEMENTS))
def test_info_without_a_required_element_is_rejected_in_both_formats(element: str) -> None:
    for decision, pointer in (
        (_decide(_json(drop_info=element)), f"/info/0/{element}"),
        (_decide(_xml(drop_info=element)), f"/alert/info[1]/{element}"),
    ):
        assert isinstance(decision, Rejected)
        assert (decision.code, decision.pointer) == (RejectionCode.SCHEMA, pointer)
