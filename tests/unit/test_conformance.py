"""CAP 1.2 conformance, fail closed: required elements in both formats, no audience-widening
defaults, references triples, scope rules, CAP 1.1 mapped only where exact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.errors import RejectionCode
from streams.ingest import Accepted, Rejected, decide, rejection_record
from streams.ingest.cap import CAP_1_1_NAMESPACE as CAP_1_1
from streams.ingest.cap import CAP_NAMESPACE
from streams.ingest.json_alert import MAX_PROBLEMS
from streams.regions import registry
from streams.schemas import validator

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
@pytest.mark.parametrize("cap", [False, True], ids=["json", "cap"])
def test_alert_without_status_msgtype_or_scope_is_rejected_naming_it(
    element: str, cap: bool
) -> None:
    decision = _decide(_xml(drop=element) if cap else _json(drop=element))
    assert isinstance(decision, Rejected)
    assert decision.code is RejectionCode.SCHEMA
    where, name = (f"/alert/{element}", f"<{element}>") if cap else (f"/{element}", element)
    assert decision.pointer == where
    assert decision.message.startswith(f"{where}: {name} is missing: CAP 1.2 requires it")


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


def test_references_must_be_sender_identifier_sent_triples() -> None:
    good = "nchmf.gov.vn,T-0,2026-09-06T07:00:00+07:00  nchmf.gov.vn,T-00,2026-09-06T06:00:00Z"
    for bad in ("nchmf.gov.vn,T-0", "nchmf.gov.vn,T-0,yesterday", good + " junk"):
        decision = _decide(_json(msgType="Update", references=bad))
        assert isinstance(decision, Rejected)
        assert (decision.code, decision.pointer) == (RejectionCode.SCHEMA, "/references")
        assert "sender,identifier,sent triples" in decision.message
    decision = _decide(_json(msgType="Update", references=good))
    assert isinstance(decision, Rejected)  # well-formed, but nothing accepted to refer to
    assert decision.code is RejectionCode.UNKNOWN_REFERENCE


@pytest.mark.parametrize("element", ["references", "restriction", "addresses", "note", "incidents"])
def test_empty_optional_element_is_refused_not_read_as_absent(element: str) -> None:
    decision = _decide(_xml(extra=f"<{element}/>"))
    assert isinstance(decision, Rejected)
    assert (decision.code, decision.pointer) == (RejectionCode.SCHEMA, f"/alert/{element}")
    assert decision.message == f"/alert/{element}: is empty"


@pytest.mark.parametrize(
    ("scope", "element"), [("Restricted", "restriction"), ("Private", "addresses")]
)
def test_restricted_needs_restriction_and_private_needs_addresses(scope: str, element: str) -> None:
    decision = _decide(_json(scope=scope))
    assert isinstance(decision, Rejected)
    assert (decision.code, decision.pointer) == (RejectionCode.SCHEMA, f"/{element}")
    assert f"scope {scope} needs it" in decision.message


@pytest.mark.parametrize(
    ("scope", "extra"),
    [("Restricted", {"restriction": "staff only"}), ("Private", {"addresses": "ops"})],
)
def test_restricted_or_private_alert_that_would_reach_anyone_is_unsupported(
    scope: str, extra: dict[str, str]
) -> None:
    decision = _decide(_json(scope=scope, **extra))
    assert isinstance(decision, Rejected)
    assert (decision.code, decision.pointer) == (RejectionCode.UNSUPPORTED, "/scope")
    assert "only to the public" in decision.message
    # a Draft reaches nobody, so its scope widens nothing
    assert isinstance(_decide(_json(scope=scope, status="Draft", **extra)), Accepted)


def test_cap_1_1_alert_is_accepted_as_cap_1_2() -> None:
    decision = _decide(_xml(namespace=CAP_1_1))
    assert isinstance(decision, Accepted)
    assert (decision.alert.status, decision.alert.msg_type, decision.alert.targets) == (
        "Actual",
        "Alert",
        ("VN-22",),
    )


def test_cap_1_1_value_that_cap_1_2_dropped_is_unsupported() -> None:
    raw = _xml(namespace=CAP_1_1).replace(b"<certainty>Likely", b"<certainty>Very Likely")
    decision = _decide(raw)
    assert isinstance(decision, Rejected)
    assert (decision.code, decision.pointer) == (
        RejectionCode.UNSUPPORTED,
        "/alert/info[1]/certainty",
    )
    assert '"Very Likely"' in decision.message
    # the same value in CAP 1.2 is simply not a CAP 1.2 value
    plain = _decide(_xml().replace(b"<certainty>Likely", b"<certainty>Very Likely"))
    assert isinstance(plain, Rejected)
    assert plain.code is RejectionCode.SCHEMA


@pytest.mark.parametrize(
    "namespace", ["http://www.incident.com/cap/1.0", "urn:oasis:names:tc:emergency:cap:1.0"]
)
def test_cap_1_0_is_unsupported(namespace: str) -> None:
    decision = _decide(_xml(namespace=namespace))
    assert isinstance(decision, Rejected)
    assert (decision.code, decision.pointer) == (RejectionCode.UNSUPPORTED, "/alert")


def test_every_fault_of_an_alert_is_reported_at_once_in_the_formats_convention() -> None:
    raw = (
        _xml(drop="scope")
        .replace(b"<urgency>Immediate", b"<urgency>Soon")
        .replace(b"<geocode><valueName>VN</valueName><value>VN-22</value></geocode>", b"")
    )
    decision = _decide(raw)
    assert isinstance(decision, Rejected)
    assert [p.pointer for p in decision.all_problems] == [
        "/alert/scope",
        "/alert/info[1]/urgency",
        "/alert/info[1]/area[1]",
    ]
    area = decision.all_problems[2].message
    assert area == (
        "/alert/info[1]/area[1]: this area has no target: add a <geocode>"
        " (valueName VN, VN-PROVINCE or VN-WARD), a <polygon> or a <circle>"
    )
    assert decision.all_problems[1].message == (
        '/alert/info[1]/urgency: "Soon" is not one of Immediate, Expected, Future, Past, Unknown'
    )
    for problem in decision.all_problems:  # CAP's 1-based XPath, never Loa's JSON pointer
        assert problem.message.startswith(problem.pointer + ": ")
        assert "/info/0" not in problem.message and "{'" not in problem.message


def test_json_faults_use_json_pointers_and_json_quoting() -> None:
    doc = _json(status="Real", identifier="a b")
    doc["info"][0]["area"] = [{"areaDesc": "only a description"}]
    decision = _decide(doc)
    assert isinstance(decision, Rejected)
    assert [p.message for p in decision.all_problems] == [
        '/identifier: "a b" must not contain spaces, commas, < or &',
        '/status: "Real" is not one of Actual, Exercise, System, Test, Draft',
        "/info/0/area/0: this area has no target: add regions, a geocode"
        " (valueName VN, VN-PROVINCE or VN-WARD), a polygon or a circle",
    ]


def test_problems_are_bounded() -> None:
    doc = _json()
    doc["info"] = [{**doc["info"][0], "urgency": "Soon", "severity": "Big"} for _ in range(16)]
    decision = _decide(doc)
    assert isinstance(decision, Rejected)
    assert len(decision.all_problems) == MAX_PROBLEMS


def test_rejection_record_lists_every_problem_and_follows_its_schema() -> None:
    decision = _decide(_json(drop="status", drop_info="certainty"))
    assert isinstance(decision, Rejected)
    record = orjson.loads(rejection_record(decision, b"{}", topic="t", partition=0, offset=1))
    validator("rejection").validate(record)
    assert record["pointer"] == "/status"
    assert [e["pointer"] for e in record["errors"]] == ["/status", "/info/0/certainty"]
    assert record["errors"][0]["message"] == record["message"]


def test_several_missing_elements_of_one_block_are_each_named() -> None:
    doc = _json(drop="status")
    del doc["scope"], doc["info"][0]["category"], doc["info"][0]["certainty"]
    decision = _decide(doc)
    assert isinstance(decision, Rejected)
    assert [p.pointer for p in decision.all_problems] == [
        "/status",
        "/scope",
        "/info/0/category",
        "/info/0/certainty",
    ]
