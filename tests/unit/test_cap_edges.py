"""CAP parsing at its edges (``streams.ingest.cap``, pure): charsets and declarations, what is
not a CAP alert, CAP structure broken, numbers, and the exact reason each refusal gives (an
agency fixes its feed from the message alone; the pointer is the element, XPath-style)."""

from __future__ import annotations

import pytest

from streams.errors import (
    ForbiddenXml,
    MalformedInput,
    PoisonError,
    SchemaViolation,
    TooLarge,
    Unsupported,
)
from streams.ingest.cap import (
    CAP_1_1_NAMESPACE,
    CAP_NAMESPACE,
    _short,
    detect_format,
    json_pointer_to_xpath,
    parse_cap,
)

DSIG = "http://www.w3.org/2000/09/xmldsig#"


def _alert(body: str = "", ns: str = CAP_NAMESPACE, area: str = "", head: str = "") -> str:
    return (
        f'{head}<alert xmlns="{ns}"><identifier>X-1</identifier><sender>a.vn</sender>'
        "<sent>2026-09-06T08:00:00+07:00</sent><status>Actual</status><msgType>Alert</msgType>"
        f"<scope>Public</scope>{body}<info><category>Met</category><event>B</event>"
        "<urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>"
        f"<headline>H</headline><area><areaDesc>d</areaDesc>{area}<geocode><valueName>LOA"
        "</valueName><value>VN-22</value></geocode></area></info></alert>"
    )


def _declared(encoding: str, spaces: int = 1) -> bytes:
    return (f'<?xml version="1.0"{" " * spaces}encoding="{encoding}"?>' + _alert()).encode()


REFUSED: dict[str, tuple[bytes, type[PoisonError], str, str]] = {
    "unknown encoding": (
        _declared("klingon"),
        MalformedInput,
        'unknown encoding "klingon" in the XML declaration',
        "",
    ),
    "a codec that is no charset": (
        _declared("rot13"),
        MalformedInput,
        'encoding "rot13" is not a character set',
        "",
    ),
    "bytes that are no UTF-8": (
        _alert().encode().replace(b"<event>B", b"<event>\xff\xfeB"),
        MalformedInput,
        "not valid utf-8: byte 244 (hex ff fe 42 3c)",
        "",
    ),
    # the declaration is read from the first 256 bytes: here it ends at byte 256
    "a declaration that ends at byte 256": (
        _declared("klingon", spaces=219),
        MalformedInput,
        'unknown encoding "klingon" in the XML declaration',
        "",
    ),
    "a DTD": (
        ('<!DOCTYPE alert [<!ENTITY x "y">]>' + _alert()).encode(),
        ForbiddenXml,
        "a DOCTYPE (DTD) is not allowed in CAP input",
        "",
    ),
    "another root": (
        f'<foo xmlns="{CAP_NAMESPACE}"/>'.encode(),
        MalformedInput,
        "the root element is <foo>, a CAP message is an <alert>",
        "/foo",
    ),
    "an alert without namespace": (
        b"<alert/>",
        MalformedInput,
        f"<alert> has no namespace, CAP 1.2 is {CAP_NAMESPACE}",
        "/alert",
    ),
    "an alert in another namespace": (
        b'<alert xmlns="urn:x"/>',
        MalformedInput,
        f'<alert> is in namespace "urn:x", CAP 1.2 is {CAP_NAMESPACE}',
        "/alert",
    ),
    "not well-formed": (
        b"<alert",
        MalformedInput,
        "not well-formed XML: unclosed token: line 1, column 0",
        "",
    ),
    "an element where text belongs": (
        _alert().replace("<event>B</event>", "<event><b>B</b></event>").encode(),
        SchemaViolation,
        "/alert/info[1]/event: <event> holds text, not elements",
        "/alert/info[1]/event",
    ),
    "an element CAP does not have": (
        _alert(body="<foo>x</foo>").encode(),
        SchemaViolation,
        "/alert/foo[1]: <foo> is not a CAP 1.2 element here",
        "/alert/foo[1]",
    ),
    "a single element twice": (
        _alert(body="<note>a</note><note>b</note>").encode(),
        SchemaViolation,
        "/alert/note[2]: <note> may appear once, this is number 2",
        "/alert/note[2]",
    ),
    "a CAP 1.1 value 1.2 dropped": (
        _alert(ns=CAP_1_1_NAMESPACE).replace("Likely", "Very Likely").encode(),
        Unsupported,
        '/alert/info[1]/certainty: CAP 1.1 value "Very Likely" has no exact CAP 1.2'
        " equivalent; send one of the CAP 1.2 values instead",
        "/alert/info[1]/certainty",
    ),
    "only white space": (b"  \n ", MalformedInput, "empty record", ""),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_each_refusal_says_exactly_what_and_where(case: str) -> None:
    raw, kind, message, pointer = REFUSED[case]
    with pytest.raises(kind) as refused:
        parse_cap(raw, max_bytes=1 << 16)
    assert (refused.value.message, refused.value.pointer) == (message, pointer)


@pytest.mark.parametrize(
    "raw",
    [
        _declared("UTF-16"),  # single bytes under a wide label: the bytes win
        _declared("utf-32"),
        _declared("UCS-2"),
        _declared("ucs_4"),
        _declared("klingon", spaces=220),  # the declaration ends past byte 256: not read
        ('\n\n <?xml version="1.0" encoding="utf-8"?>' + _alert()).encode(),
    ],
)
def test_labels_the_bytes_contradict_or_that_come_late_are_not_obeyed(raw: bytes) -> None:
    doc = parse_cap(raw, max_bytes=1 << 16)
    assert (doc["identifier"], doc["info"][0]["headline"]) == ("X-1", "H")


def test_elements_of_other_namespaces_are_read_past_wherever_they_are() -> None:
    signed_first = _alert().replace("<identifier>", f'<Signature xmlns="{DSIG}"/><identifier>')
    doc = parse_cap(signed_first.encode(), max_bytes=1 << 16)
    assert doc["identifier"] == "X-1"
    assert doc["scope"] == "Public"
    assert len(doc["info"]) == 1


def test_only_xml_white_space_is_trimmed_from_text() -> None:
    raw = _alert().replace("<headline>H", "<headline>\u00a0H\u00a0 \n").encode()
    assert parse_cap(raw, max_bytes=1 << 16)["info"][0]["headline"] == "\u00a0H\u00a0"


def test_repeated_elements_keep_their_order() -> None:
    raw = _alert(body="<code>a</code><code>b</code>").encode()
    assert parse_cap(raw, max_bytes=1 << 16)["code"] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("-5", -5),
        ("10.0", 10.0),
        ("2.5", 2.5),
        ("123456789012345", 123456789012345),
        ("1234567890123456", 1234567890123456.0),
        ("1e3", "1e3"),  # not a CAP decimal: left as text for the schema to refuse
    ],
)
def test_numbers_are_integers_only_when_written_as_short_integers(
    text: str, value: float | int | str
) -> None:
    raw = _alert(area=f"<altitude>{text}</altitude>").encode()
    got = parse_cap(raw, max_bytes=1 << 16)["info"][0]["area"][0]["altitude"]
    assert got == value
    assert type(got) is type(value)


def test_the_size_limit_admits_exactly_its_bytes() -> None:
    raw = _alert().encode()
    assert parse_cap(raw, max_bytes=len(raw))["identifier"] == "X-1"
    with pytest.raises(TooLarge) as refused:
        parse_cap(raw, max_bytes=len(raw) - 1)
    assert refused.value.message == f"record is {len(raw)} bytes, the limit is {len(raw) - 1}"


def test_too_deep_names_the_element_by_its_position_among_its_siblings() -> None:
    first = "<parameter/><parameter><valueName>v</valueName></parameter>"
    raw = _alert().replace("<info>", f"<info>{first}", 1)
    with pytest.raises(ForbiddenXml) as refused:
        parse_cap(raw.encode(), max_bytes=1 << 16, max_depth=3)
    assert refused.value.message == "XML nested deeper than 3 elements"
    assert refused.value.pointer == "/alert[1]/info[1]/parameter[2]/valueName[1]"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"<alert/>", "xml"),
        (b" \t\r\n<alert/>", "xml"),
        (b"\x0c<alert/>", "json"),  # a form feed is not XML white space
        (b"\xef\xbb\xbf\x0c<alert/>", "json"),
        (b"\xef\xbb\xbf \n<alert/>", "xml"),
        (b" " * 255 + b"<alert/>", "xml"),
        (b" " * 256 + b"<alert/>", "json"),  # only the first 256 bytes are looked at
    ],
)
def test_the_format_is_told_from_the_first_character_in_the_first_256_bytes(
    raw: bytes, kind: str
) -> None:
    assert detect_format(raw) == kind


@pytest.mark.parametrize(
    ("pointer", "xpath"),
    [
        ("", ""),
        ("/0", "/alert/0"),
        ("/info/0/area/1/geocode/0", "/alert/info[1]/area[2]/geocode[1]"),
        ("/a~1b/c~0d", "/alert/a/b/c~d"),
        ("/Xx/XX", "/alert/Xx/XX"),
    ],
)
def test_json_pointers_become_cap_element_paths(pointer: str, xpath: str) -> None:
    assert json_pointer_to_xpath(pointer) == xpath


def test_long_parser_messages_are_cut_at_200_characters() -> None:
    assert _short(ValueError("x" * 200)) == "x" * 200
    assert _short(ValueError("x" * 201)) == "x" * 200 + "..."


def test_a_namespace_holding_a_brace_names_its_own_root_element() -> None:
    from streams.ingest.cap import _split

    assert _split("{urn:x}y}alert") == ("urn:x}y", "alert")
    assert _split("alert") == ("", "alert")
