"""CAP 1.2 XML ingest: samples map faithfully and validate; hostile XML is refused, not obeyed."""

from __future__ import annotations

import socket
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from streams.errors import (
    ForbiddenXml,
    MalformedInput,
    PoisonError,
    RejectionCode,
    SchemaViolation,
    TooLarge,
    Unsupported,
)
from streams.ingest.cap import CAP_NAMESPACE, detect_format, json_pointer_to_xpath, parse_cap
from streams.ingest.json_alert import validate_json_alert

DATA = Path(__file__).resolve().parent.parent / "data" / "cap"
SAMPLES = sorted(DATA.glob("*.xml"))
HOSTILE = DATA / "hostile"
CAP_XSD = DATA.parent.parent.parent / "schemas" / "cap" / "loa-cap-1.2.xsd"
LIMIT = 256 * 1024  # LOA_MAX_ALERT_BYTES default


def _parse(raw: bytes, **kwargs: Any) -> dict[str, Any]:
    return parse_cap(raw, max_bytes=kwargs.pop("max_bytes", LIMIT), **kwargs)


def _sample(name: str) -> dict[str, Any]:
    return _parse((DATA / name).read_bytes())


def _cap(body: str, *, declaration: str = "") -> bytes:
    return f'{declaration}<alert xmlns="{CAP_NAMESPACE}">{body}</alert>'.encode()


_INFO = (  # with the alert's other required elements, so _HEAD + <sent> + _INFO is complete
    "<status>Actual</status><msgType>Alert</msgType><scope>Public</scope>"
    "<info><category>Met</category><event>Bão</event><urgency>Immediate</urgency>"
    "<severity>Extreme</severity><certainty>Likely</certainty>"
    "<headline>Bão số 3</headline><area><areaDesc>x</areaDesc>"
    "<geocode><valueName>VN</valueName><value>VN-22</value></geocode></area></info>"
)
_HEAD = "<identifier>T-1</identifier><sender>nchmf.gov.vn</sender>"


# --- samples -----------------------------------------------------------------------------------


def test_there_are_enough_samples() -> None:
    assert len(SAMPLES) >= 8


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses_to_a_valid_json_alert(path: Path) -> None:
    raw = path.read_bytes()
    assert detect_format(raw) == "xml"
    doc = _parse(raw)
    validate_json_alert(doc)
    assert orjson.loads(orjson.dumps(doc)) == doc  # plain JSON data, nothing else
    assert None not in _values(doc)


def _values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in [value, *_values(value)]]
    if isinstance(node, list):
        return [v for value in node for v in [value, *_values(value)]]
    return []


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_conforms_to_loas_cap_xsd(path: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(CAP_XSD)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.fromstring(path.read_bytes(), parser)
    assert schema.validate(doc), schema.error_log


def test_nws_update_keeps_references_geocodes_polygon_and_parameters() -> None:
    doc = _sample("us-nws-flash-flood-warning.xml")
    assert doc["msgType"] == "Update"
    assert doc["references"].startswith("w-nws.webmaster@noaa.gov,urn:oid:")
    assert doc["code"] == ["IPAWSv1.0"]
    assert doc["sent"] == "2026-06-14T21:47:00-05:00"
    (info,) = doc["info"]
    assert info["eventCode"] == [
        {"valueName": "SAME", "value": "FFW"},
        {"valueName": "NationalWeatherService", "value": "FFW"},
    ]
    assert [p["valueName"] for p in info["parameter"]].count("BLOCKCHANNEL") == 2
    assert info["description"].startswith("At 944 PM CDT")  # stripped, inner lines kept
    (area,) = info["area"]
    assert [(g["valueName"], g["value"]) for g in area["geocode"]] == [
        ("SAME", "048303"),
        ("SAME", "048107"),
        ("SAME", "048305"),
        ("UGC", "TXC303"),
        ("UGC", "TXC107"),
        ("UGC", "TXC305"),
    ]
    (polygon,) = area["polygon"]
    points = polygon.split(" ")
    assert len(points) == 6 and points[0] == points[-1] == "33.68,-102.05"


def test_ptwc_minus_zero_offset_becomes_plus_zero_and_circles_are_kept() -> None:
    doc = _sample("ptwc-tsunami-threat.xml")
    assert doc["sent"] == "2026-06-20T04:12:33+00:00"
    (info,) = doc["info"]
    assert info["onset"] == "2026-06-20T04:01:10+00:00"
    assert info["expires"] == "2026-06-20T10:12:33+00:00"
    assert info["responseType"] == ["Evacuate", "Monitor"]
    assert doc["incidents"] == "2026-171-EQ-TONGA"
    first, second = info["area"]
    assert first == {
        "areaDesc": "Coasts within 1000 km of the epicentre",
        "circle": ["-20.6,-174.4 1000"],
        "altitude": 0,
    }
    assert second["circle"] == ["-21.14,-175.2 50", "-19.8,-174.35 40"]
    assert len(second["polygon"]) == 1


def test_shift_jis_earthquake_decodes_japanese_and_keeps_info_order() -> None:
    doc = _sample("jp-jma-earthquake-shift-jis.xml")
    assert [info["language"] for info in doc["info"]] == ["ja-JP", "en-US"]
    ja = doc["info"][0]
    assert ja["event"] == "緊急地震速報（警報）"
    assert ja["senderName"] == "気象庁"
    assert ja["area"][0]["circle"] == ["35.7,140.1 120"]
    assert [g["value"] for g in ja["area"][0]["geocode"]] == ["340", "350"]
    assert doc["sent"] == "2026-09-03T10:15:22+09:00"


def test_meteoalarm_three_languages_each_with_their_areas() -> None:
    doc = _sample("meteoalarm-multilanguage-wind.xml")
    assert [info["language"] for info in doc["info"]] == ["de-DE", "en-GB", "hu-HU"]
    assert [len(info["area"]) for info in doc["info"]] == [2, 2, 1]
    assert doc["info"][0]["event"] == "Sturmböen"
    assert doc["info"][2]["headline"] == "Sárga figyelmeztetés viharos széllökések miatt"
    assert doc["info"][0]["parameter"][0] == {
        "valueName": "awareness_level",
        "value": "2; yellow; Moderate",
    }
    assert "parameter" not in doc["info"][2]  # absent stays absent


def test_latin1_declaration_is_honoured() -> None:
    raw = (DATA / "fr-vigilance-orages-latin1.xml").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the vector really is not UTF-8
    (info,) = _parse(raw)["info"]
    assert info["senderName"] == "Météo-France"
    assert info["description"].startswith("Épisode orageux marqué")


def test_utf16_with_bom_and_plus_seven_offsets() -> None:
    raw = (DATA / "th-tmd-heavy-rain-utf16.xml").read_bytes()
    assert raw.startswith(b"\xff\xfe")
    doc = _parse(raw)
    assert doc["sent"] == "2026-09-17T05:30:00+07:00"
    (info,) = doc["info"]
    assert info["event"] == "ฝนตกหนักถึงหนักมาก"
    assert info["expires"] == "2026-09-19T06:00:00+07:00"


def test_minimal_alert_has_only_the_keys_it_wrote() -> None:
    doc = _sample("minimal-optional-fields-absent.xml")
    assert set(doc) == {"identifier", "sender", "sent", "status", "msgType", "scope", "info"}
    (info,) = doc["info"]
    assert set(info) == {
        "category",
        "event",
        "urgency",
        "severity",
        "certainty",
        "headline",
        "area",
    }
    assert info["area"] == [
        {"areaDesc": "Gyeongju", "geocode": [{"valueName": "ISO3166-2", "value": "KR-47"}]}
    ]


def test_vietnamese_typhoon_targets_provinces_by_vn_geocode() -> None:
    doc = _sample("vn-nchmf-typhoon.xml")
    assert doc["sender"] == "nchmf.gov.vn"
    vi, en = doc["info"]
    assert vi["language"] == "vi-VN" and en["language"] == "en-US"
    assert vi["headline"].startswith("Tin bão khẩn cấp: Bão số 3")
    assert [g["value"] for g in vi["area"][0]["geocode"]] == ["VN-22", "VN-31"]
    assert {g["valueName"] for g in vi["area"][0]["geocode"]} == {"VN"}
    assert vi["area"][1]["circle"] == ["20.3,108.9 150"]


def test_windows_1258_comes_out_nfc_and_resource_and_signature_are_ignored() -> None:
    raw = (DATA / "vn-quangngai-flood-windows1258.xml").read_bytes()
    assert "\u0303" in raw.decode("cp1258")  # the vector spells tones as combining marks
    doc = _parse(raw)
    (info,) = doc["info"]
    assert info["headline"] == "Cảnh báo lũ quét và sạt lở đất vùng núi tỉnh Quảng Ngãi"
    assert unicodedata.is_normalized("NFC", info["description"])
    assert "resource" not in info
    assert info["category"] == ["Met", "Safety"]
    assert info["area"][0]["altitude"] == 150 and info["area"][0]["ceiling"] == 2500.5
    assert doc["status"] == "Exercise" and doc["note"] == "Diễn tập phòng chống lũ năm 2026"


# --- format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"<alert/>", "xml"),
        (b" \r\n\t<alert/>", "xml"),
        (b"\xef\xbb\xbf<?xml version='1.0'?><a/>", "xml"),
        (" <alert/>".encode("utf-16"), "xml"),
        ("<alert/>".encode("utf-16-be"), "xml"),
        ("<alert/>".encode("utf-16-le"), "xml"),
        ("<alert/>".encode("utf-32"), "xml"),
        (b'{"identifier": "x"}', "json"),
        (b'  {"a": "<"}', "json"),
        ("{}".encode("utf-16"), "json"),
        (b"", "json"),
        (b"\xff", "json"),
    ],
)
def test_detect_format(raw: bytes, expected: str) -> None:
    assert detect_format(raw) == expected


# --- mapping details ----------------------------------------------------------------------------


def test_cdata_comments_and_processing_instructions_are_harmless() -> None:
    raw = _cap(
        _HEAD + "<!-- a comment --><?loa-ignore me?>"
        "<sent>2026-09-06T08:00:00+07:00</sent>"
        "<note><![CDATA[<b>&amp; not markup</b>]]> and <!-- hidden --> text</note>" + _INFO,
        declaration='<?xml version="1.0"?>\n<?xml-stylesheet href="cap.xsl" type="text/xsl"?>\n',
    )
    doc = _parse(raw)
    assert doc["note"] == "<b>&amp; not markup</b> and  text"
    validate_json_alert(doc)


def test_time_without_offset_is_passed_through_for_the_validator_to_reject() -> None:
    doc = _parse(_cap(_HEAD + "<sent>2026-09-06T08:00:00</sent>" + _INFO))
    assert doc["sent"] == "2026-09-06T08:00:00"
    with pytest.raises(SchemaViolation) as caught:
        validate_json_alert(doc)
    assert caught.value.pointer == "/sent"
    assert json_pointer_to_xpath(caught.value.pointer) == "/alert/sent"


def test_polygon_whitespace_runs_collapse_and_empty_values_stay_empty() -> None:
    doc = _parse(
        _cap(
            "<identifier> T-1 </identifier><sender></sender><sent/><info><area>"
            "<areaDesc/><polygon>\n 1,2\t\t3,4 \n 1,2 </polygon><altitude>high</altitude>"
            "<ceiling>1e999</ceiling></area></info>"
        )
    )
    assert doc["identifier"] == "T-1" and doc["sender"] == "" and doc["sent"] == ""
    area = doc["info"][0]["area"][0]
    assert area == {
        "areaDesc": "",
        "polygon": ["1,2 3,4 1,2"],
        "altitude": "high",
        "ceiling": "1e999",
    }
    with pytest.raises(SchemaViolation):
        validate_json_alert(doc)


def test_foreign_namespace_elements_and_attributes_are_ignored() -> None:
    doc = _parse(
        _cap(
            _HEAD + '<sent x:a="1" xmlns:x="urn:x">2026-09-06T08:00:00+07:00</sent>'
            '<ext:priority xmlns:ext="urn:vendor">9</ext:priority>' + _INFO
        )
    )
    assert "priority" not in doc and doc["sent"] == "2026-09-06T08:00:00+07:00"


def test_utf16_without_bom_and_big_endian() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?>' + _cap(_HEAD + _INFO).decode()
    for encoding in ("utf-16-le", "utf-16-be"):
        assert _parse(text.encode(encoding))["info"][0]["event"] == "Bão"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (_HEAD + "<sent>a</sent><sent>b</sent>", "/alert/sent[2]"),
        (_HEAD + "<colour>red</colour>", "/alert/colour[1]"),
        (
            _HEAD + "<info/><info><area/><area><polygon><b/></polygon></area></info>",
            "/alert/info[2]/area[2]/polygon[1]",
        ),
        (
            _HEAD + "<info><area><geocode><value>1</value><value>2</value></geocode></area></info>",
            "/alert/info[1]/area[1]/geocode[1]/value[2]",
        ),
    ],
)
def test_broken_cap_structure_is_a_schema_violation_with_its_xpath(body: str, pointer: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        _parse(_cap(body))
    assert caught.value.pointer == pointer
    assert caught.value.code is RejectionCode.SCHEMA


@pytest.mark.parametrize(
    ("pointer", "xpath"),
    [
        ("", ""),
        ("/sent", "/alert/sent"),
        ("/info/0", "/alert/info[1]"),
        ("/info/1/area/0/geocode/2/value", "/alert/info[2]/area[1]/geocode[3]/value"),
    ],
)
def test_json_pointer_to_xpath(pointer: str, xpath: str) -> None:
    assert json_pointer_to_xpath(pointer) == xpath


# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("billion-laughs.xml", ForbiddenXml),
        ("quadratic-blowup.xml", ForbiddenXml),
        ("xxe-file.xml", ForbiddenXml),
        ("xxe-http.xml", ForbiddenXml),
        ("xxe-external-dtd.xml", ForbiddenXml),
        ("parameter-entities.xml", ForbiddenXml),
        ("doctype-alone.xml", ForbiddenXml),
        ("undeclared-entity.xml", MalformedInput),
        ("cap10.xml", Unsupported),
        ("no-namespace.xml", MalformedInput),
        ("wrong-root.xml", MalformedInput),
        ("json-after-angle.xml", MalformedInput),
        ("truncated.xml", MalformedInput),
        ("invalid-utf8.xml", MalformedInput),
        ("empty.xml", MalformedInput),
        ("whitespace-only.xml", MalformedInput),
        ("unknown-encoding.xml", MalformedInput),
        ("utf7-encoding.xml", MalformedInput),
    ],
)
def test_hostile_vector_is_rejected_with_its_class(name: str, error: type[PoisonError]) -> None:
    with pytest.raises(error) as caught:
        _parse((HOSTILE / name).read_bytes())
    assert type(caught.value) is error
    assert "root:" not in caught.value.message  # nothing of /etc/passwd


def test_every_hostile_file_is_covered() -> None:
    names = {p.name for p in HOSTILE.iterdir()}
    covered = {
        "billion-laughs.xml",
        "quadratic-blowup.xml",
        "xxe-file.xml",
        "xxe-http.xml",
        "xxe-external-dtd.xml",
        "parameter-entities.xml",
        "doctype-alone.xml",
        "undeclared-entity.xml",
        "cap10.xml",
        "cap11-missing-elements.xml",  # parses (CAP 1.1 is read); test_conformance rejects it
        "no-namespace.xml",
        "wrong-root.xml",
        "json-after-angle.xml",
        "truncated.xml",
        "invalid-utf8.xml",
        "empty.xml",
        "whitespace-only.xml",
        "unknown-encoding.xml",
        "utf7-encoding.xml",
    }
    assert names == covered


def test_xxe_never_reads_the_file_nor_opens_the_socket(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("LOA-SECRET-7f1c")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        for system_id in (secret.as_uri(), f"http://127.0.0.1:{port}/xxe"):
            raw = (
                f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "{system_id}">]>'
                f'<alert xmlns="{CAP_NAMESPACE}">{_HEAD}<note>&x;</note>{_INFO}</alert>'
            ).encode()
            with pytest.raises(ForbiddenXml) as caught:
                _parse(raw)
            assert "LOA-SECRET" not in f"{caught.value.message} {caught.value.pointer}"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_deep_nesting_stops_at_the_first_element_too_deep() -> None:
    raw = ("<a>" * 10_000 + "</a>" * 10_000).encode()
    with pytest.raises(ForbiddenXml) as caught:
        _parse(raw)
    assert caught.value.pointer == "/a[1]" * 33
    inner = _cap("<info><area><geocode><value>x</value></geocode></area></info>")
    _parse(inner, max_depth=5)
    with pytest.raises(ForbiddenXml) as caught:
        _parse(inner, max_depth=4)
    assert caught.value.pointer == "/alert[1]/info[1]/area[1]/geocode[1]/value[1]"


def test_ten_megabyte_payload_is_too_large_before_any_parsing() -> None:
    raw = _cap(_HEAD + "<note>" + "x" * (10 * 1024 * 1024) + "</note>")
    with pytest.raises(TooLarge):
        _parse(raw)
    with pytest.raises(TooLarge):
        # not even well-formed: the size check comes first
        _parse(b"<" + b"\xff" * (10 * 1024 * 1024))


@pytest.mark.parametrize(
    ("encoding", "written"),
    [
        ("windows-1258", "Ba\u0303o \u0111\u01b0\u01a1\u0300ng"),  # tones as combining marks
        ("ISO-8859-15", "Bão à €"),
        ("cp1252", "Bão à “€”"),
        ("koi8-r", "Тайфун"),
        ("big5", "颱風"),
    ],
)
def test_declared_single_and_multi_byte_encodings_decode(encoding: str, written: str) -> None:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>'
    raw = _cap(_HEAD + f"<note>{written}</note>", declaration=declaration).decode()
    assert _parse(raw.encode(encoding))["note"] == unicodedata.normalize("NFC", written)


def test_utf16_label_on_single_byte_document_reads_as_utf8() -> None:
    raw = _cap(_HEAD + "<note>Bão</note>", declaration='<?xml version="1.0" encoding="UTF-16"?>')
    assert _parse(raw)["note"] == "Bão"


def test_declared_encoding_that_does_not_fit_the_bytes_is_malformed() -> None:
    raw = _cap(_HEAD + "<note>Bão</note>", declaration='<?xml version="1.0" encoding="ascii"?>')
    with pytest.raises(MalformedInput):
        _parse(raw)
    with pytest.raises(MalformedInput):
        _parse(b'<?xml version="1.0" encoding="rot13"?><alert/>')


# --- property-based -----------------------------------------------------------------------------

_RAW_SAMPLES = [p.read_bytes() for p in SAMPLES]
_FRAGMENTS = [
    b"<",
    b">",
    b"&",
    b"&lol;",
    b"<!DOCTYPE a>",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?pi?>",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"</info>",
    b"<info>",
    b"<area>",
    b"<polygon>",
    b'xmlns="urn:x"',
    b"-00:00",
    b"\xc3",
]


def _check_only_poison(raw: bytes) -> None:
    try:
        doc = _parse(raw, max_bytes=64 * 1024)
        validate_json_alert(doc)
        orjson.dumps(doc)
    except PoisonError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_poison_errors(raw: bytes) -> None:
    _check_only_poison(raw)
    assert detect_format(raw) in ("xml", "json")


@st.composite
def _mutated_sample(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(_RAW_SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "fragment"]))
        if op == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del raw[at:]
        else:
            raw[at:at] = draw(st.sampled_from(_FRAGMENTS))
    return bytes(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_sample())
def test_mutated_samples_raise_only_poison_errors(raw: bytes) -> None:
    _check_only_poison(raw)


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["note", "sent", "code", "info", "sender", "x"]), _TEXT),
        max_size=8,
    )
)
def test_generated_element_soup_raises_only_poison_errors(children: list[tuple[str, str]]) -> None:
    from xml.sax.saxutils import escape

    body = "".join(f"<{name}>{escape(text)}</{name}>" for name, text in children)
    _check_only_poison(_cap(body))
