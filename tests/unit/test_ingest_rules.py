"""Every rejection and authorization rule of ingest, table-driven, through ``decide`` with a real
agency registry (Agency records in memory, signed with real Ed25519 keys).

Each code of the README's rejection table has a case that produces it and a near miss that does
not: the same record one step inside the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import h3
import orjson
import pytest

from streams.errors import RejectionCode
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.agencies import Agency, AgencyRegistry, Grant
from streams.ingest.lifecycle import LifecycleState
from streams.ingest.signatures import new_key_pair, signature_headers
from streams.regions import registry

NOW = datetime(2026, 9, 6, 2, 0, tzinfo=UTC)
R = registry()

NATIONAL = new_key_pair("nchmf.gov.vn", "k1")
PROVINCE = new_key_pair("ubnd.quangninh.gov.vn", "k1")
DRILLS = new_key_pair("drills.gov.vn", "k1")
OTHER = new_key_pair("nchmf.gov.vn", "k1")  # same agency and key id, not its registered key

QN_CENTRE = (21.0, 107.3)  # Hạ Long, Quảng Ninh (VN-22)
HANOI = (21.03, 105.85)
QN_CELLS = tuple(h3.grid_disk(h3.latlng_to_cell(*QN_CENTRE, 5), 1))

REGISTRY = AgencyRegistry.of(
    Agency(
        "nchmf.gov.vn",
        "NCHMF",
        {"k1": NATIONAL.public_key},
        ("VN",),
        ("Actual", "Exercise", "Test"),
        "Extreme",
        amends=(Grant(("*",), ("Update", "Cancel")),),
    ),
    Agency(
        "ubnd.quangninh.gov.vn",
        "Quảng Ninh",
        {"k1": PROVINCE.public_key},
        ("VN-22",),
        ("Actual", "Exercise", "Test"),
        "Severe",
        jurisdiction_cells=QN_CELLS,
    ),
    Agency(
        "drills.gov.vn",
        "Drills only",
        {"k1": DRILLS.public_key},
        ("VN-2", "VN-01"),  # VN-2 is not a whole segment of VN-22
        ("Exercise", "Test"),
        "Extreme",
    ),
)
KEYS = {k.agency: k for k in (NATIONAL, PROVINCE, DRILLS)}


def alert(
    sender: str = "ubnd.quangninh.gov.vn",
    identifier: str = "A-1",
    *,
    area: dict[str, Any] | None = None,
    infos: int = 1,
    **top: Any,
) -> dict[str, Any]:
    info = {
        "category": ["Met"],
        "event": "Lũ",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Observed",
        "headline": "Lũ trên sông Ka Long",
        "area": [area or {"areaDesc": "Móng Cái", "regions": ["VN-22"]}],
    }
    doc: dict[str, Any] = {
        "identifier": identifier,
        "sender": sender,
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": [dict(info, language=lang) for lang in ("vi-VN", "en-US")[:infos]],
    }
    for name, value in top.items():
        if name.startswith("info_"):
            for block in doc["info"]:
                block[name[5:]] = value
        else:
            doc[name] = value
    return doc


def circle(lat_lon: tuple[float, float], km: float) -> dict[str, Any]:
    return {"areaDesc": "c", "circle": [f"{lat_lon[0]},{lat_lon[1]} {km}"]}


def square(lat_lon: tuple[float, float], d: float) -> dict[str, Any]:
    lat, lon = lat_lon
    ring = [(lat, lon), (lat, lon + d), (lat + d, lon + d), (lat + d, lon), (lat, lon)]
    return {"areaDesc": "p", "polygon": [" ".join(f"{a},{b}" for a, b in ring)]}


@dataclass
class Case:
    doc: dict[str, Any] | bytes
    #: Messages accepted before this one (same state), e.g. the Alert an Update refers to.
    before: list[dict[str, Any]] = field(default_factory=list)
    signer: str | None = None  # defaults to the doc's sender
    key: Any = None  # sign with this KeyPair instead
    max_bytes: int = 64 * 1024
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def run(case: Case, monkeypatch: pytest.MonkeyPatch) -> Accepted | Duplicate | Rejected:
    state = LifecycleState()
    for earlier in case.before:
        got = _decide(earlier, state, None, 64 * 1024)
        assert isinstance(got, Accepted), got
        state.record(got.plan, earlier["msgType"], got.alert)
    if case.patch is not None:
        case.patch(monkeypatch)
    return _decide(case.doc, state, case.key, case.max_bytes)


def _decide(
    doc: dict[str, Any] | bytes, state: LifecycleState, key: Any, max_bytes: int
) -> Accepted | Duplicate | Rejected:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    sender = "nchmf.gov.vn" if isinstance(doc, bytes) else doc["sender"]
    signer = key or KEYS.get(sender, NATIONAL)
    return decide(
        raw,
        regions=R,
        partitions=2,
        max_bytes=max_bytes,
        state=state,
        agencies=REGISTRY,
        headers=signature_headers(signer, raw),
        now=NOW,
    )


def _raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("streams.ingest.core.resolve_targets", broken)


UPDATE_OF_A1 = {
    "msgType": "Update",
    "references": "ubnd.quangninh.gov.vn,A-1,2026-09-06T08:00:00+07:00",
}
CANCEL_OF_A1 = {"msgType": "Cancel", "references": UPDATE_OF_A1["references"]}
UPDATE_OF_N1 = {"msgType": "Update", "references": "nchmf.gov.vn,N-1,2026-09-06T08:00:00+07:00"}
CANCEL_OF_N1 = {"msgType": "Cancel", "references": UPDATE_OF_N1["references"]}
CANCEL_OF_N1X = CANCEL_OF_N1
XML = (
    b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x "y">]>'
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>'
)
EXPIRED = "2026-09-06T08:30:00+07:00"  # NOW is 09:00 in +07:00
LATER = "2026-09-06T12:00:00+07:00"

# code -> (a case producing it, a near miss that is accepted)
TABLE: dict[str, tuple[Case, Case]] = {
    "malformed": (Case(b"{not json"), Case(alert())),
    "too_large": (
        Case(alert(), max_bytes=100),
        Case(alert(), max_bytes=len(orjson.dumps(alert()))),
    ),
    "forbidden_xml": (Case(XML), Case(alert())),
    "schema": (Case(alert(info_headline=None)), Case(alert(info_headline="Lũ"))),
    "unknown_sender": (
        Case(alert(sender="ubnd.quangnam.gov.vn"), key=PROVINCE),
        Case(alert(sender="ubnd.quangninh.gov.vn"), key=PROVINCE),
    ),
    "bad_signature": (
        Case(alert(sender="nchmf.gov.vn"), key=OTHER),
        Case(alert(sender="nchmf.gov.vn")),
    ),
    "status_not_allowed": (
        Case(alert(sender="drills.gov.vn", area={"areaDesc": "x", "regions": ["VN-01"]})),
        Case(
            alert(
                sender="drills.gov.vn",
                status="Exercise",
                area={"areaDesc": "x", "regions": ["VN-01"]},
            )
        ),
    ),
    "schema/flat_polygon": (
        Case(
            alert(
                area={"areaDesc": "p", "polygon": ["21.0,107.3 21.0,107.31 21.0,107.32 21.0,107.3"]}
            )
        ),
        Case(
            alert(
                area={
                    "areaDesc": "p",
                    "polygon": ["21.0,107.3 21.0,107.31 21.01,107.32 21.0,107.3"],
                }
            )
        ),
    ),
    "severity_not_allowed": (
        Case(alert(info_severity="Extreme")),
        Case(alert(info_severity="Severe")),
    ),
    "out_of_jurisdiction": (
        Case(alert(area={"areaDesc": "Hà Nội", "regions": ["VN-01"]})),
        Case(
            alert(
                area={
                    "areaDesc": "Hạ Long",
                    "regions": [
                        R.ward_codes[R.ward_province.tolist().index(R.province_index("VN-22"))]
                    ],
                }
            )
        ),
    ),
    "out_of_jurisdiction/circle": (
        Case(alert(area=circle(HANOI, 3))),
        Case(alert(area=circle(QN_CENTRE, 3))),
    ),
    "out_of_jurisdiction/polygon": (
        Case(alert(area=square(HANOI, 0.05))),
        Case(alert(area=square(QN_CENTRE, 0.05))),
    ),
    "out_of_jurisdiction/segment": (
        Case(alert(sender="drills.gov.vn", status="Exercise")),  # VN-2 does not cover VN-22
        Case(
            alert(
                sender="drills.gov.vn",
                status="Exercise",
                area={"areaDesc": "x", "regions": ["VN-01"]},
            )
        ),
    ),
    "unknown_region": (
        Case(alert(sender="nchmf.gov.vn", area={"areaDesc": "x", "regions": ["VN-99"]})),
        Case(alert(sender="nchmf.gov.vn", area={"areaDesc": "x", "regions": ["VN-96"]})),
    ),
    "unknown_region/shape": (
        Case(alert(sender="nchmf.gov.vn", area=circle((35.0, 139.0), 3))),
        Case(alert(sender="nchmf.gov.vn", area=circle((16.0, 108.2), 3))),
    ),
    "unsupported": (
        Case(alert(sender="nchmf.gov.vn", area=circle((16.0, 108.2), 2500))),
        Case(alert(sender="nchmf.gov.vn", area=circle((16.0, 108.2), 40))),
    ),
    "expired": (
        Case(alert(info_expires=EXPIRED, infos=2)),
        # one language block still current keeps the whole multi-language alert
        Case(
            alert(infos=2)
            | {
                "info": [
                    alert(info_expires=EXPIRED)["info"][0],
                    alert(info_expires=LATER)["info"][0],
                ]
            }
        ),
    ),
    "unknown_reference": (
        Case(alert(identifier="A-2", **UPDATE_OF_A1)),
        Case(alert(identifier="A-2", **UPDATE_OF_A1), before=[alert()]),
    ),
    "already_cancelled": (
        Case(
            alert(identifier="A-3", **UPDATE_OF_A1),
            before=[alert(), alert(identifier="A-2", **CANCEL_OF_A1)],
        ),
        Case(
            alert(identifier="A-3", **UPDATE_OF_A1),
            before=[alert(), alert(identifier="A-2", **UPDATE_OF_A1)],
        ),
    ),
    # a province's Update of the national authority's alert; the authority itself may
    "not_lineage_owner": (
        Case(
            alert(identifier="P-1", **UPDATE_OF_N1),
            before=[alert(sender="nchmf.gov.vn", identifier="N-1")],
        ),
        Case(
            alert(sender="nchmf.gov.vn", identifier="N-2", **UPDATE_OF_N1),
            before=[alert(sender="nchmf.gov.vn", identifier="N-1")],
        ),
    ),
    # the national authority's grant covers provincial lineages within its jurisdiction
    "not_lineage_owner/cancel": (
        Case(
            alert(sender="drills.gov.vn", identifier="D-1", status="Exercise", **CANCEL_OF_N1X),
            before=[alert(sender="nchmf.gov.vn", identifier="N-1", status="Exercise")],
        ),
        Case(
            alert(sender="nchmf.gov.vn", identifier="N-3", **CANCEL_OF_A1),
            before=[alert()],
        ),
    ),
    # an Exercise Cancel of an Actual alert; the Actual Cancel is accepted
    "status_mismatch": (
        Case(
            alert(sender="nchmf.gov.vn", identifier="N-2", status="Exercise", **CANCEL_OF_N1),
            before=[alert(sender="nchmf.gov.vn", identifier="N-1")],
        ),
        Case(
            alert(sender="nchmf.gov.vn", identifier="N-2", **CANCEL_OF_N1),
            before=[alert(sender="nchmf.gov.vn", identifier="N-1")],
        ),
    ),
    "status_mismatch/republish": (
        Case(alert(status="Test"), before=[alert()]),
        Case(alert(identifier="A-9", status="Test"), before=[alert()]),
    ),
    "unknown_reference/sent": (
        Case(
            alert(
                identifier="A-2",
                msgType="Update",
                references="ubnd.quangninh.gov.vn,A-1,2026-09-06T08:00:01+07:00",
            ),
            before=[alert()],
        ),
        # the same instant written in another offset is the same sent
        Case(
            alert(
                identifier="A-2",
                msgType="Update",
                references="ubnd.quangninh.gov.vn,A-1,2026-09-06T01:00:00+00:00",
            ),
            before=[alert()],
        ),
    ),
    "internal": (Case(alert(), patch=_raise), Case(alert())),
    "duplicate": (
        Case(alert(), before=[alert()]),
        Case(alert(identifier="A-9"), before=[alert()]),
    ),
}


def test_the_table_covers_every_rejection_code() -> None:
    covered = {name.split("/")[0] for name in TABLE}
    assert covered == {code.value for code in RejectionCode}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_rule_rejects_its_case_with_its_code(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code = name.split("/")[0]
    got = run(TABLE[name][0], monkeypatch)
    if code == "duplicate":
        assert isinstance(got, Duplicate)
    else:
        assert isinstance(got, Rejected), got
        assert got.code.value == code, got.message
        assert got.message


@pytest.mark.parametrize("name", sorted(TABLE))
def test_near_miss_of_rule_is_accepted(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    got = run(TABLE[name][1], monkeypatch)
    assert isinstance(got, Accepted), got
    assert got.orders


@pytest.mark.parametrize(
    ("name", "pointer"),
    [
        ("severity_not_allowed", "/info/0/severity"),
        ("status_not_allowed", "/status"),
        ("out_of_jurisdiction", "/info/0/area/0/regions/0"),
        ("unknown_region", "/info/0/area/0/regions/0"),
        ("expired", "/info"),
        ("unknown_reference", "/references"),
        ("already_cancelled", "/references"),
        ("not_lineage_owner", "/references"),
        ("status_mismatch", "/references"),
        ("status_mismatch/republish", "/status"),
    ],
)
def test_rejection_points_at_the_offending_field(
    name: str, pointer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = run(TABLE[name][0], monkeypatch)
    assert isinstance(got, Rejected) and got.pointer == pointer


def test_severity_rule_checks_every_info_block() -> None:
    doc = alert(infos=2)
    doc["info"][1]["severity"] = "Extreme"
    got = _decide(doc, LifecycleState(), None, 64 * 1024)
    assert isinstance(got, Rejected) and got.pointer == "/info/1/severity"


def test_unknown_severity_is_never_within_an_agency_s_ceiling() -> None:
    from streams.ingest.authority import authorize

    agency = REGISTRY.agencies["nchmf.gov.vn"]
    with pytest.raises(Exception, match="severity"):
        authorize(
            agency, status=("/s", "Actual"), severities=[("/v", "Catastrophic")], region_codes=[]
        )


def test_an_accepted_decision_carries_its_warnings_and_reach() -> None:
    from streams.ingest.reach import Reach

    lao_bao = alert(sender="nchmf.gov.vn", area=circle((16.62, 106.59), 15))
    got = _decide(lao_bao, LifecycleState(), None, 64 * 1024)
    assert isinstance(got, Accepted)
    assert [w["code"] for w in got.alert.warnings] == ["partly_outside", "located_only"]
    assert got.alert.warnings[0]["pointer"] == "/info/0/area/0/circle/0"
    assert got.alert.reach is None  # no census asked: nothing said about the reach

    def nobody(codes: tuple[str, ...], cells: tuple[str, ...], test_only: bool) -> Reach:
        return Reach(0, {"oa": 0}, 0, 0, partitions_counted=4, partitions=4, as_of=None)

    def half(codes: tuple[str, ...], cells: tuple[str, ...], test_only: bool) -> Reach:
        return Reach(5, {"oa": 5}, 5, 0, partitions_counted=2, partitions=4, as_of=None)

    raw = orjson.dumps(alert(sender="nchmf.gov.vn"))
    decided = {
        name: decide(
            raw,
            regions=R,
            partitions=2,
            max_bytes=1 << 16,
            agencies=REGISTRY,
            headers=signature_headers(NATIONAL, raw),
            now=NOW,
            reach=counter,
        )
        for name, counter in (("nobody", nobody), ("half", half))
    }
    nobody_got, half_got = decided["nobody"], decided["half"]
    assert isinstance(nobody_got, Accepted) and isinstance(half_got, Accepted)
    assert [w["code"] for w in nobody_got.alert.warnings] == ["empty_audience"]
    assert nobody_got.alert.reach is not None and nobody_got.alert.reach["complete"] is True
    assert [w["code"] for w in half_got.alert.warnings] == ["reach_unknown"]
    assert half_got.alert.reach is not None and half_got.alert.reach["total"] == 5


def test_an_info_block_without_expires_keeps_the_alert_in_force() -> None:
    doc = alert(infos=2)
    doc["info"][0]["expires"] = EXPIRED  # the other block never expires
    got = _decide(doc, LifecycleState(), None, 64 * 1024)
    assert isinstance(got, Accepted), got
    assert got.alert.expires is None
    assert all(order.expires is None for order in got.orders)
    doc["info"][1]["expires"] = LATER
    got = _decide(doc, LifecycleState(), None, 64 * 1024)
    assert isinstance(got, Accepted) and got.alert.expires is not None
    assert datetime.fromisoformat(got.alert.expires) == datetime.fromisoformat(LATER)
