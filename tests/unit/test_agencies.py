from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import h3
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import (
    BadSignature,
    InvalidAgency,
    OutOfJurisdiction,
    PoisonError,
    RejectionCode,
    SeverityNotAllowed,
    StatusNotAllowed,
    UnknownSender,
)
from streams.ingest.agencies import (
    Agency,
    AgencyRegistry,
    add_keys,
    decode_agency_record,
    load_agency_files,
    parse_agency,
)
from streams.ingest.authority import authorize
from streams.ingest.signatures import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    KeyPair,
    load_private_key,
    new_key_pair,
    read_credentials,
    read_public_key_file,
    sign,
    signature_headers,
    verify,
    verify_headers,
    write_key_pair,
)
from streams.schemas import validator

ROOT = Path(__file__).resolve().parents[2]
RAW = orjson.dumps({"sender": "nchmf.gov.vn", "identifier": "X-1", "info": []})

NATIONAL_KEY = new_key_pair("nchmf.gov.vn", "nchmf/1")
PROVINCE_KEY = new_key_pair("ubnd.quangninh.gov.vn", "qn/1")
# Same key id as the national key, different agency: key ids are scoped per agency.
CLASHING_KEY = new_key_pair("ubnd.quangninh.gov.vn", "nchmf/1")


def _agency(key: KeyPair, jurisdiction: tuple[str, ...], **kw: Any) -> Agency:
    values: dict[str, Any] = {
        "id": key.agency,
        "name": key.agency,
        "keys": {key.key_id: key.public_key},
        "jurisdiction": jurisdiction,
        "allowed_statuses": ("Actual", "Exercise", "Test"),
        "max_severity": "Extreme",
    }
    values.update(kw)
    return Agency(**values)


NATIONAL = _agency(NATIONAL_KEY, ("VN",))
PROVINCE = _agency(PROVINCE_KEY, ("VN-22",), max_severity="Severe")
REGISTRY = AgencyRegistry.of(NATIONAL, PROVINCE)


def _verify(raw: bytes, key: KeyPair, sender: str = "nchmf.gov.vn") -> Agency:
    return verify(REGISTRY, sender, raw, sign(key.private_key, raw), key.key_id)


# --- authentication ---------------------------------------------------------------------------


def test_good_signature_identifies_the_agency() -> None:
    assert _verify(RAW, NATIONAL_KEY) is NATIONAL
    assert _verify(RAW, PROVINCE_KEY, sender="ubnd.quangninh.gov.vn") is PROVINCE


def test_signature_of_other_bytes_is_bad_signature() -> None:
    wrong = sign(NATIONAL_KEY.private_key, RAW + b" ")
    with pytest.raises(BadSignature) as err:
        verify(REGISTRY, "nchmf.gov.vn", RAW, wrong, NATIONAL_KEY.key_id)
    assert err.value.code is RejectionCode.BAD_SIGNATURE


def test_tampered_payload_is_bad_signature() -> None:
    signature = sign(NATIONAL_KEY.private_key, RAW)
    tampered = RAW.replace(b"X-1", b"X-2")
    with pytest.raises(BadSignature, match="does not verify"):
        verify(REGISTRY, "nchmf.gov.vn", tampered, signature, NATIONAL_KEY.key_id)


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, KEY_ID_HEADER, "both"])
def test_missing_header_is_bad_signature(missing: str) -> None:
    headers = dict(signature_headers(NATIONAL_KEY, RAW))
    for name in (SIGNATURE_HEADER, KEY_ID_HEADER) if missing == "both" else (missing,):
        del headers[name]
    with pytest.raises(BadSignature, match="no loa-"):
        verify_headers(REGISTRY, "nchmf.gov.vn", RAW, headers)


def test_unknown_key_id_is_bad_signature() -> None:
    with pytest.raises(BadSignature, match="not a key of agency"):
        verify(REGISTRY, "nchmf.gov.vn", RAW, sign(NATIONAL_KEY.private_key, RAW), "nchmf/2")


def test_valid_signature_by_another_agency_is_bad_signature() -> None:
    # The province signs an alert claiming to come from the national centre, with its own key
    # id (unknown to the sender) and with a key id that clashes with one of the sender's.
    forged = sign(PROVINCE_KEY.private_key, RAW)
    with pytest.raises(BadSignature, match=r'not a key of agency "nchmf\.gov\.vn"'):
        verify(REGISTRY, "nchmf.gov.vn", RAW, forged, PROVINCE_KEY.key_id)
    clash = sign(CLASHING_KEY.private_key, RAW)
    with pytest.raises(BadSignature, match="does not verify"):
        verify(REGISTRY, "nchmf.gov.vn", RAW, clash, CLASHING_KEY.key_id)


@pytest.mark.parametrize("sender", ["unknown.gov.vn", None, ""])
def test_unknown_sender_is_rejected_before_the_signature(sender: str | None) -> None:
    with pytest.raises(UnknownSender) as err:
        verify(REGISTRY, sender, RAW, sign(NATIONAL_KEY.private_key, RAW), NATIONAL_KEY.key_id)
    assert err.value.code is RejectionCode.UNKNOWN_SENDER
    assert err.value.pointer == "/sender"


def test_unknown_sender_quotes_an_invalid_registry_record() -> None:
    registry = AgencyRegistry({}, {"broken.gov.vn": "agency record at /keys: bad"})
    with pytest.raises(UnknownSender, match="registry record is invalid"):
        verify(registry, "broken.gov.vn", RAW, None, None)


@pytest.mark.parametrize(
    "signature",
    [
        b"not base64!",
        base64.b64encode(b"short"),
        base64.b64encode(bytes(64)),
        b"\xff\xfe",
        b"A" * 10_000,
        "ü",
    ],
)
def test_malformed_signature_is_bad_signature(signature: bytes | str) -> None:
    with pytest.raises(BadSignature):
        verify(REGISTRY, "nchmf.gov.vn", RAW, signature, NATIONAL_KEY.key_id)


def test_headers_in_aiokafka_and_mapping_shapes_verify() -> None:
    pairs = list(signature_headers(NATIONAL_KEY, RAW))
    assert verify_headers(REGISTRY, "nchmf.gov.vn", RAW, [*pairs, ("other", b"x")]) is NATIONAL
    assert verify_headers(REGISTRY, "nchmf.gov.vn", RAW, dict(pairs)) is NATIONAL
    assert read_credentials(None) == (None, None)


def test_duplicate_signature_header_is_bad_signature() -> None:
    pairs = list(signature_headers(NATIONAL_KEY, RAW))
    with pytest.raises(BadSignature, match="more than once"):
        verify_headers(REGISTRY, "nchmf.gov.vn", RAW, pairs + pairs[:1])


_header_names = st.sampled_from([SIGNATURE_HEADER, KEY_ID_HEADER, "x", "LOA-SIGNATURE"])
_header_values = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=90).map(str.encode),
    st.binary(min_size=64, max_size=64).map(base64.b64encode),
    st.sampled_from([b"nchmf/1", b"qn/1", sign(NATIONAL_KEY.private_key, RAW)]),
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(st.just(RAW), st.binary(max_size=200)),
    sender=st.one_of(st.none(), st.sampled_from(["nchmf.gov.vn", "ubnd.quangninh.gov.vn", "x"])),
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=4),
)
def test_no_header_or_payload_raises_anything_but_poison(
    raw: bytes, sender: str | None, headers: list[tuple[str, bytes]]
) -> None:
    try:
        agency = verify_headers(REGISTRY, sender, raw, headers)
    except PoisonError as exc:
        assert exc.code in {RejectionCode.UNKNOWN_SENDER, RejectionCode.BAD_SIGNATURE}
        return
    # Only a genuine signature of these exact bytes by the sender's key gets through.
    assert agency is NATIONAL and raw == RAW


# --- authorization ----------------------------------------------------------------------------


def _authorize(
    agency: Agency, codes: list[str], *, status: str = "Actual", severities: tuple[str, ...] = ()
) -> None:
    authorize(
        agency,
        status=("/status", status),
        severities=[(f"/info/{i}/severity", s) for i, s in enumerate(severities)],
        region_codes=[(f"/info/0/area/0/regions/{i}", c) for i, c in enumerate(codes)],
    )


def test_province_covers_itself_and_its_wards_only() -> None:
    _authorize(PROVINCE, ["VN-22", "VN-22-06733"])
    with pytest.raises(OutOfJurisdiction) as err:
        _authorize(PROVINCE, ["VN-22-06733", "VN-31"])
    assert err.value.code is RejectionCode.OUT_OF_JURISDICTION
    assert err.value.pointer == "/info/0/area/0/regions/1"
    with pytest.raises(OutOfJurisdiction):
        _authorize(PROVINCE, ["VN"])  # a province may not alert the whole country


def test_prefix_matches_whole_segments_only() -> None:
    agency = _agency(NATIONAL_KEY, ("VN-2",))
    with pytest.raises(OutOfJurisdiction):
        _authorize(agency, ["VN-22"])
    with pytest.raises(OutOfJurisdiction):
        _authorize(_agency(NATIONAL_KEY, ("VN-22-067",)), ["VN-22-06733"])


def test_national_covers_every_code_of_the_country_and_no_other() -> None:
    _authorize(NATIONAL, ["VN", "VN-01", "VN-22-06733", "VN-96-32248"])
    with pytest.raises(OutOfJurisdiction):
        _authorize(NATIONAL, ["LA-01"])


def test_ward_jurisdiction_covers_only_that_ward() -> None:
    ward = _agency(NATIONAL_KEY, ("VN-22-06733",))
    _authorize(ward, ["VN-22-06733"])
    with pytest.raises(OutOfJurisdiction):
        _authorize(ward, ["VN-22"])


def test_empty_jurisdiction_covers_nothing_but_an_alert_without_targets_passes() -> None:
    nowhere = _agency(NATIONAL_KEY, ())
    _authorize(nowhere, [])
    with pytest.raises(OutOfJurisdiction):
        _authorize(nowhere, ["VN"])


# H3 cells near Hạ Long (Quảng Ninh) and in Ho Chi Minh City, fixed so the test needs no h3.
QN_RES4 = "8441425ffffffff"
QN_RES8 = "8841424025fffff"  # inside QN_RES4
QN_RES2 = "824147fffffffff"  # the res-2 parent of QN_RES8: coarser than QN_RES4
HCM_RES8 = "8865b5644dfffff"


def test_shape_cells_must_lie_in_the_jurisdiction_cells() -> None:
    province = _agency(PROVINCE_KEY, ("VN-22",), jurisdiction_cells=(QN_RES4,))
    assert province.covers_cell(QN_RES8) and province.covers_cell(QN_RES4)
    assert not province.covers_cell(HCM_RES8)
    assert not province.covers_cell(QN_RES2)
    assert not province.covers_cell("not-a-cell")
    authorize(
        province,
        status=("/status", "Actual"),
        severities=(),
        region_codes=(),
        cells=[("/info/0/area/0/polygon/0", QN_RES8)],
    )
    with pytest.raises(OutOfJurisdiction) as err:
        authorize(
            province,
            status=("/status", "Actual"),
            severities=(),
            region_codes=(),
            cells=[("/info/0/area/0/polygon/0", QN_RES8), ("/info/0/area/1/circle/0", HCM_RES8)],
        )
    assert err.value.pointer == "/info/0/area/1/circle/0"


def test_shapes_need_jurisdiction_cells_unless_national() -> None:
    assert NATIONAL.covers_cell(HCM_RES8)
    assert not PROVINCE.covers_cell(QN_RES8)  # fail closed: no cells registered
    with pytest.raises(OutOfJurisdiction, match="no jurisdiction_cells"):
        authorize(
            PROVINCE,
            status=("/status", "Actual"),
            severities=(),
            region_codes=(),
            cells=[("/info", QN_RES8)],
        )


@pytest.mark.parametrize("status", ["System", "Draft", "actual", ""])
def test_status_outside_the_allowed_ones_is_rejected(status: str) -> None:
    with pytest.raises(StatusNotAllowed) as err:
        _authorize(NATIONAL, ["VN"], status=status)
    assert err.value.code is RejectionCode.STATUS_NOT_ALLOWED
    assert err.value.pointer == "/status"


def test_severity_ordering_caps_the_agency() -> None:
    for allowed in ("Severe", "Moderate", "Minor", "Unknown"):
        _authorize(PROVINCE, ["VN-22"], severities=(allowed,))
    with pytest.raises(SeverityNotAllowed) as err:
        _authorize(PROVINCE, ["VN-22"], severities=("Minor", "Extreme"))
    assert err.value.code is RejectionCode.SEVERITY_NOT_ALLOWED
    assert err.value.pointer == "/info/1/severity"
    minor = _agency(NATIONAL_KEY, ("VN",), max_severity="Minor")
    _authorize(minor, ["VN"], severities=("Unknown", "Minor"))
    for above in ("Moderate", "Severe", "Extreme", "Catastrophic"):
        with pytest.raises(SeverityNotAllowed):
            _authorize(minor, ["VN"], severities=(above,))


def test_status_is_checked_before_severity_and_jurisdiction() -> None:
    with pytest.raises(StatusNotAllowed):
        _authorize(PROVINCE, ["VN-31"], status="Draft", severities=("Extreme",))
    with pytest.raises(SeverityNotAllowed):
        _authorize(PROVINCE, ["VN-31"], severities=("Extreme",))


# --- the agency file format and key files ----------------------------------------------------


def test_deploy_agency_files_are_valid() -> None:
    loaded = {a.id: a for a in load_agency_files(ROOT / "deploy" / "agencies")}
    assert loaded["nchmf.gov.vn"].jurisdiction == ("VN",)
    assert loaded["ubnd.quangninh.gov.vn"].jurisdiction == ("VN-22",)
    assert loaded["ubnd.quangninh.gov.vn"].max_severity == "Severe"
    assert "test.agency.vn" not in loaded  # never loaded with the production directory
    (test_agency,) = load_agency_files(ROOT / "deploy" / "agencies" / "testing")
    assert test_agency.id == "test.agency.vn"


def test_agency_round_trips_through_its_record() -> None:
    for agency in (NATIONAL, _agency(PROVINCE_KEY, ("VN-22",), jurisdiction_cells=(QN_RES4,))):
        value = agency.to_json()
        validator("agency").validate(orjson.loads(value))
        assert decode_agency_record(agency.id.encode(), value) == agency


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (b"other.gov.vn", None, "differs from its id"),
        (None, None, "without a key"),
        (b"nchmf.gov.vn", b"{", "not JSON"),
        (b"nchmf.gov.vn", {"max_severity": "Catastrophic"}, "max_severity"),
        (b"nchmf.gov.vn", {"keys": {"k": "AAAA"}}, "keys"),
        (b"nchmf.gov.vn", {"jurisdiction": ["vn-22"]}, "jurisdiction"),
        (b"nchmf.gov.vn", {"extra": 1}, "Additional properties"),
    ],
)
def test_invalid_agency_record_is_refused(key: bytes | None, value: Any, match: str) -> None:
    if value is None or isinstance(value, dict):
        doc = NATIONAL.to_doc()
        doc.update(value or {})
        value = orjson.dumps(doc)
    with pytest.raises(InvalidAgency, match=match):
        decode_agency_record(key, value)


def test_key_files_round_trip_and_register(tmp_path: Path) -> None:
    pair = new_key_pair("nchmf.gov.vn", "nchmf.gov.vn/20260906-abc")
    private_path, public_path = write_key_pair(pair, tmp_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.name == "nchmf.gov.vn_20260906-abc.key"
    with pytest.raises(FileExistsError):
        write_key_pair(pair, tmp_path)
    loaded = load_private_key(private_path.read_bytes())
    assert (loaded.agency, loaded.key_id, loaded.public_key) == (
        "nchmf.gov.vn",
        pair.key_id,
        pair.public_key,
    )
    assert load_private_key(private_path.read_bytes(), key_id="other").key_id == "other"
    public = read_public_key_file(public_path)
    (registered,) = add_keys([NATIONAL], [public])
    assert set(registered.keys) == {NATIONAL_KEY.key_id, pair.key_id}
    registry = AgencyRegistry.of(registered)
    assert verify_headers(registry, "nchmf.gov.vn", RAW, signature_headers(loaded, RAW))
    with pytest.raises(InvalidAgency, match="not loaded"):
        add_keys([PROVINCE], [public])


def test_publish_finds_sender_and_identifier_in_cap_xml_and_json() -> None:
    from streams.agency.inbound import alert_ids as _alert_ids

    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>QN-2026-1</identifier>
  <sender>ubnd.quangninh.gov.vn</sender>
  <sent>2026-09-06T08:00:00+07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
</alert>"""
    assert _alert_ids(xml, 64 * 1024) == ("ubnd.quangninh.gov.vn", "QN-2026-1")
    assert _alert_ids(RAW, 64 * 1024) == ("nchmf.gov.vn", "X-1")
    assert _alert_ids(b"<!DOCTYPE x [<!ENTITY a 'b'>]><alert/>", 64 * 1024) is None


# --- what a refusal says (agencies and operators read these) ----------------------------------

NO_RIGHTS = _agency(PROVINCE_KEY, (), allowed_statuses=())


@pytest.mark.parametrize(
    ("agency", "call", "says"),
    [
        (
            PROVINCE,
            {"status": ("/status", "Draft")},
            'agency "ubnd.quangninh.gov.vn" may not publish status "Draft" '
            "(allowed: Actual, Exercise, Test)",
        ),
        (NO_RIGHTS, {"status": ("/status", "Actual")}, '"Actual" (allowed: none)'),
        (
            PROVINCE,
            {"severities": [("/info/0/severity", "Extreme")]},
            'agency "ubnd.quangninh.gov.vn" may not publish severity "Extreme" '
            "(its highest is Severe)",
        ),
        (
            PROVINCE,
            {"region_codes": [("/r", "VN-01")]},
            '"VN-01" is outside the jurisdiction of agency "ubnd.quangninh.gov.vn" (VN-22)',
        ),
        (
            _agency(PROVINCE_KEY, ()),
            {"region_codes": [("/r", "VN-01")]},
            'agency "ubnd.quangninh.gov.vn" (none)',
        ),
        (
            _agency(PROVINCE_KEY, ("VN-22", "VN-31")),
            {"region_codes": [("/r", "VN-01")]},
            'agency "ubnd.quangninh.gov.vn" (VN-22, VN-31)',
        ),
    ],
)
def test_a_refusal_names_the_agency_the_value_and_what_it_may_do(
    agency: Agency, call: dict[str, Any], says: str
) -> None:
    args: dict[str, Any] = {"status": ("/status", "Actual"), "severities": [], "region_codes": []}
    args.update(call)
    with pytest.raises(PoisonError) as caught:
        authorize(agency, **args)
    assert says in caught.value.message


def test_a_shape_refusal_names_the_cell_and_says_when_the_agency_has_no_cells() -> None:
    hanoi = h3.latlng_to_cell(21.03, 105.85, 7)
    with_cells = _agency(PROVINCE_KEY, ("VN-22",), jurisdiction_cells=(QN_RES4,))
    for agency, tail in [(with_cells, ""), (PROVINCE, " (it has no jurisdiction_cells)")]:
        with pytest.raises(OutOfJurisdiction) as caught:
            authorize(
                agency,
                status=("/status", "Actual"),
                severities=[],
                region_codes=[],
                cells=[("/info", hanoi)],
            )
        assert caught.value.message == (
            f"the shape reaches H3 cell {hanoi} outside the jurisdiction of agency "
            f'"ubnd.quangninh.gov.vn"{tail}'
        )


def test_an_unknown_sender_is_named_at_the_pointer_given() -> None:
    with pytest.raises(UnknownSender) as caught:
        verify(REGISTRY, "x.vn", RAW, b"", b"", sender_pointer="/alert/sender")
    assert caught.value.pointer == "/alert/sender"
    assert caught.value.message == 'sender "x.vn" is not a registered agency'
    for pointer, kw in [("/sender", {}), ("/s", {"sender_pointer": "/s"})]:
        with pytest.raises(UnknownSender) as caught:
            verify_headers(REGISTRY, "x.vn", RAW, [], **kw)
        assert caught.value.pointer == pointer


def test_signature_refusals_name_the_key_id_and_the_agency() -> None:
    signature = sign(PROVINCE_KEY.private_key, RAW)
    with pytest.raises(BadSignature) as caught:
        verify(REGISTRY, "nchmf.gov.vn", RAW, signature, "zz/9")
    assert 'key id "zz/9" is not a key of agency "nchmf.gov.vn"' in caught.value.message
    with pytest.raises(BadSignature) as caught:
        verify(REGISTRY, "nchmf.gov.vn", RAW, signature, NATIONAL_KEY.key_id)
    assert 'with key "nchmf/1" of agency "nchmf.gov.vn"' in caught.value.message


@pytest.mark.parametrize(
    ("signature", "key_id", "says"),
    [
        (b"AAAA", "k\u00fc".encode(), "loa-key-id header is not ASCII"),
        (b"AAAA", b"k" * 257, "loa-key-id header is too long"),
        (b"AAAA", "k" * 257, "loa-key-id header is too long"),
        (b"not base64!", NATIONAL_KEY.key_id, "loa-signature header is not base64"),
        # a stray character is refused, not dropped to leave a well-formed signature
        (
            b"!" + base64.b64encode(bytes(64)),
            NATIONAL_KEY.key_id,
            "loa-signature header is not base64",
        ),
        ("s\u00fc".encode(), NATIONAL_KEY.key_id, "loa-signature header is not ASCII"),
        (b"A" * 257, NATIONAL_KEY.key_id, "loa-signature header is too long"),
        (base64.b64encode(b"short"), NATIONAL_KEY.key_id, "loa-signature is 5 bytes"),
    ],
)
def test_a_malformed_header_is_named_with_what_is_wrong(
    signature: bytes | str, key_id: bytes | str, says: str
) -> None:
    with pytest.raises(BadSignature) as caught:
        verify(REGISTRY, "nchmf.gov.vn", RAW, signature, key_id)
    assert says in caught.value.message


@pytest.mark.parametrize("key_id", [b"k" * 256, "k" * 256])
def test_a_header_of_256_characters_is_not_too_long(key_id: bytes | str) -> None:
    with pytest.raises(BadSignature, match="is not a key of agency"):
        verify(REGISTRY, "nchmf.gov.vn", RAW, b"AAAA", key_id)


def test_an_absent_payload_is_the_empty_payload() -> None:
    signature = sign(NATIONAL_KEY.private_key, b"")
    assert verify(REGISTRY, "nchmf.gov.vn", None, signature, NATIONAL_KEY.key_id) is NATIONAL


def test_headers_are_read_whatever_the_name_and_value_types() -> None:
    signature = sign(NATIONAL_KEY.private_key, RAW)
    # names as bytes, values as str, other and undecodable headers first
    headers: list[tuple[Any, Any]] = [
        (b"\xff\xfe", b"x"),
        (7, b"x"),
        ("other", b"x"),
        (b"loa-signature", signature.decode()),
        (b"LOA-Key-Id", NATIONAL_KEY.key_id),
    ]
    assert read_credentials(headers) == (signature, NATIONAL_KEY.key_id.encode())
    assert verify_headers(REGISTRY, "nchmf.gov.vn", RAW, headers) is NATIONAL
    # a value that is neither bytes nor text reads as empty; one that cannot be UTF-8 is mangled
    assert read_credentials([("loa-key-id", None)]) == (None, b"")
    assert read_credentials([("loa-key-id", "k\udc80")]) == (None, b"k?")


@pytest.mark.parametrize("headers", [[("loa-signature",)], [b"loa-signature"], [5]])
def test_headers_that_are_not_name_value_pairs_are_unreadable(headers: list[Any]) -> None:
    with pytest.raises(BadSignature, match=r"^unreadable record headers$"):
        read_credentials(headers)


def test_an_invalid_record_names_its_agency_and_its_first_bad_field() -> None:
    doc = NATIONAL.to_doc()
    doc.update({"max_severity": "Catastrophic", "jurisdiction": ["vn-22"]})
    for key, named in [(None, "nchmf.gov.vn"), ("nchmf.gov.vn", "nchmf.gov.vn")]:
        with pytest.raises(InvalidAgency) as caught:
            parse_agency(doc, key=key)
        assert caught.value.agency == named
        assert caught.value.message.startswith("agency record at /jurisdiction/0: ")
    with pytest.raises(InvalidAgency) as caught:
        parse_agency(NATIONAL.to_doc(), key="other.gov.vn")
    assert caught.value.agency == "other.gov.vn"
    assert caught.value.message == 'record key "other.gov.vn" differs from its id "nchmf.gov.vn"'


def test_a_bad_certificate_names_itself_and_its_agency() -> None:
    doc = {**NATIONAL.to_doc(), "certificates": {"c1": "-----BEGIN CERTIFICATE-----\nAAAA\n"}}
    with pytest.raises(InvalidAgency) as caught:
        parse_agency(doc)
    assert caught.value.agency == "nchmf.gov.vn"
    assert '"c1"' in caught.value.message


def test_contact_round_trips_and_agency_files_are_indented_for_people() -> None:
    agency = _agency(NATIONAL_KEY, ("VN",), contact="trực ban: 024 0000 0000")
    assert agency.to_doc()["contact"] == "trực ban: 024 0000 0000"
    assert parse_agency(orjson.loads(agency.to_json())) == agency
    assert b'\n  "id": "nchmf.gov.vn"' in agency.to_json()
