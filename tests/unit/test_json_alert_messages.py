"""What ``validate_json_alert`` tells an agency, rule by rule, in JSON and in CAP terms.

An agency fixes its alert from these messages alone, so each rule's message is pinned: where
(a JSON pointer, or CAP's XPath with 1-based positions), the value quoted, and the rule in
words (the choices of an enum, the form a pattern wants, the limit broken). The documents are
the full alert of ``test_schema_constraints.py`` broken in one place.
"""

# ruff: noqa: E501  (the expected messages are whole lines an agency reads)
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from streams.errors import MalformedInput, SchemaViolation
from streams.ingest.json_alert import decode_json_alert, validate_json_alert
from tests.unit.test_schema_constraints import FULL_ALERT

Change = Callable[[dict[str, Any]], object]


def _set(*path: str | int, to: Any) -> Change:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = to

    return change


def _drop(*path: str | int) -> Change:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        for name in path[-1].split("+") if isinstance(path[-1], str) else [path[-1]]:
            del target[name]

    return change


AREA = ("info", 0, "area", 0)
CHANGES: dict[str, Change] = {
    "enum": _set("status", to="Actualx"),
    "enum empty": _set("status", to=""),
    "enum items": _set("info", 0, "category", 0, to="Weather"),
    "pattern": _set("identifier", to="X 1"),
    "pattern empty": _set("identifier", to=""),
    "pattern regions": _set(*AREA, "regions", 0, to="VN-2"),
    "pattern sent": _set("sent", to="2026-09-06 08:00"),
    "pattern refs": _set("references", to="a,b"),
    "pattern lang": _set("info", 0, "language", to="vietnamese"),
    "minLength": _set("note", to=""),
    "maxLength": _set("note", to="x" * 8193),
    "minItems": _set("info", 0, "category", to=[]),
    "maxItems": _set("code", to=["c"] * 33),
    "type str": _set("note", to=12345),
    "type bool": _set("note", to=True),
    "type float": _set("note", to=1.5),
    "type null": _set("note", to=None),
    "type arr": _set("note", to=[]),
    "type obj": _set("note", to={}),
    "type array->str": _set("code", to="x"),
    "additional": _set("zz", to=1),
    "additional info": _set("info", 0, "zz", to=1),
    "required status": _drop("status"),
    "required identifier": _drop("identifier"),
    "required urgency": _drop("info", 0, "urgency"),
    "required two": _drop("sent+scope"),
    "anyOf": _drop(*AREA, "regions+geocode+polygon+circle"),
    "month 13": _set("sent", to="2026-13-06T08:00:00+07:00"),
    "no tz": _set("info", 0, "expires", to="2026-09-07T08:00:00"),
    "bad expires": _set("info", 0, "onset", to="tomorrow"),
    "two times": lambda d: (
        d.__setitem__("sent", "2026-13-06T08:00:00+07:00"),
        d["info"][0].__setitem__("expires", "2026-09-07T08:00:00"),
    ),
}

EXPECTED: list[tuple[str, bool, list[tuple[str, str]]]] = [
    (
        "enum",
        False,
        [("/status", '/status: "Actualx" is not one of Actual, Exercise, System, Test, Draft')],
    ),
    (
        "enum",
        True,
        [
            (
                "/alert/status",
                '/alert/status: "Actualx" is not one of Actual, Exercise, System, Test, Draft',
            )
        ],
    ),
    ("enum empty", False, [("/status", "/status: is empty")]),
    ("enum empty", True, [("/alert/status", "/alert/status: is empty")]),
    (
        "enum items",
        False,
        [
            (
                "/info/0/category/0",
                '/info/0/category/0: "Weather" is not one of Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other',
            )
        ],
    ),
    (
        "enum items",
        True,
        [
            (
                "/alert/info[1]/category[1]",
                '/alert/info[1]/category[1]: "Weather" is not one of Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other',
            )
        ],
    ),
    (
        "pattern",
        False,
        [("/identifier", '/identifier: "X 1" must not contain spaces, commas, < or &')],
    ),
    (
        "pattern",
        True,
        [("/alert/identifier", '/alert/identifier: "X 1" must not contain spaces, commas, < or &')],
    ),
    ("pattern empty", False, [("/identifier", "/identifier: is empty")]),
    ("pattern empty", True, [("/alert/identifier", "/alert/identifier: is empty")]),
    (
        "pattern regions",
        False,
        [
            (
                "/info/0/area/0/regions/0",
                '/info/0/area/0/regions/0: "VN-2" is not a Loa region code (VN, VN-PP or VN-PP-WWWWW)',
            )
        ],
    ),
    (
        "pattern regions",
        True,
        [
            (
                "/alert/info[1]/area[1]/regions[1]",
                '/alert/info[1]/area[1]/regions[1]: "VN-2" is not a Loa region code (VN, VN-PP or VN-PP-WWWWW)',
            )
        ],
    ),
    (
        "pattern sent",
        False,
        [
            (
                "/sent",
                '/sent: "2026-09-06 08:00" is not a date-time with a time zone such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "pattern sent",
        True,
        [
            (
                "/alert/sent",
                '/alert/sent: "2026-09-06 08:00" is not a date-time with a time zone such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "pattern refs",
        False,
        [
            (
                "/references",
                '/references: "a,b" must be space-separated sender,identifier,sent triples such as nchmf.gov.vn,BAO-1,2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "pattern refs",
        True,
        [
            (
                "/alert/references",
                '/alert/references: "a,b" must be space-separated sender,identifier,sent triples such as nchmf.gov.vn,BAO-1,2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "pattern lang",
        False,
        [
            (
                "/info/0/language",
                '/info/0/language: "vietnamese" is not a language tag such as vi-VN',
            )
        ],
    ),
    (
        "pattern lang",
        True,
        [
            (
                "/alert/info[1]/language",
                '/alert/info[1]/language: "vietnamese" is not a language tag such as vi-VN',
            )
        ],
    ),
    ("minLength", False, [("/note", "/note: is empty")]),
    ("minLength", True, [("/alert/note", "/alert/note: is empty")]),
    ("maxLength", False, [("/note", "/note: has 8193 characters, at most 8192 are allowed")]),
    (
        "maxLength",
        True,
        [("/alert/note", "/alert/note: has 8193 characters, at most 8192 are allowed")],
    ),
    ("minItems", False, [("/info/0/category", "/info/0/category: needs at least 1 category")]),
    (
        "minItems",
        True,
        [("/alert/info[1]/category", "/alert/info[1]/category: needs at least 1 <category>")],
    ),
    ("maxItems", False, [("/code", "/code: has 33 code, at most 32 are allowed")]),
    ("maxItems", True, [("/alert/code", "/alert/code: has 33 <code>, at most 32 are allowed")]),
    ("type str", False, [("/note", "/note: 12345 is a number, not string")]),
    ("type str", True, [("/alert/note", "/alert/note: 12345 is a number, not string")]),
    ("type bool", False, [("/note", "/note: true is a boolean, not string")]),
    ("type bool", True, [("/alert/note", "/alert/note: true is a boolean, not string")]),
    ("type float", False, [("/note", "/note: 1.5 is a number, not string")]),
    ("type float", True, [("/alert/note", "/alert/note: 1.5 is a number, not string")]),
    ("type null", False, [("/note", "/note: null is null, not string")]),
    ("type null", True, [("/alert/note", "/alert/note: null is null, not string")]),
    ("type arr", False, [("/note", "/note: [] is an array, not string")]),
    ("type arr", True, [("/alert/note", "/alert/note: [] is an array, not string")]),
    ("type obj", False, [("/note", "/note: {} is an object, not string")]),
    ("type obj", True, [("/alert/note", "/alert/note: {} is an object, not string")]),
    ("type array->str", False, [("/code", '/code: "x" is a string, not array')]),
    ("type array->str", True, [("/alert/code", '/alert/code: "x" is a string, not array')]),
    (
        "additional",
        False,
        [("the alert", 'the alert: "zz" is not a field of Loa\'s JSON alert here')],
    ),
    ("additional", True, [("/alert", '/alert: "zz" is not a field of Loa\'s JSON alert here')]),
    (
        "additional info",
        False,
        [("/info/0", '/info/0: "zz" is not a field of Loa\'s JSON alert here')],
    ),
    (
        "additional info",
        True,
        [("/alert/info[1]", '/alert/info[1]: "zz" is not a field of Loa\'s JSON alert here')],
    ),
    (
        "required status",
        False,
        [
            (
                "/status",
                "/status: status is missing: CAP 1.2 requires it in every alert; Loa never assumes Actual (one of Actual, Exercise, System, Test, Draft)",
            )
        ],
    ),
    (
        "required status",
        True,
        [
            (
                "/alert/status",
                "/alert/status: <status> is missing: CAP 1.2 requires it in every alert; Loa never assumes Actual (one of Actual, Exercise, System, Test, Draft)",
            )
        ],
    ),
    (
        "required identifier",
        False,
        [("/identifier", "/identifier: identifier is missing: CAP 1.2 requires it in every alert")],
    ),
    (
        "required identifier",
        True,
        [
            (
                "/alert/identifier",
                "/alert/identifier: <identifier> is missing: CAP 1.2 requires it in every alert",
            )
        ],
    ),
    (
        "required urgency",
        False,
        [
            (
                "/info/0/urgency",
                "/info/0/urgency: urgency is missing: CAP 1.2 requires it in every info block (one of Immediate, Expected, Future, Past, Unknown)",
            )
        ],
    ),
    (
        "required urgency",
        True,
        [
            (
                "/alert/info[1]/urgency",
                "/alert/info[1]/urgency: <urgency> is missing: CAP 1.2 requires it in every info block (one of Immediate, Expected, Future, Past, Unknown)",
            )
        ],
    ),
    (
        "required two",
        False,
        [
            (
                "/sent",
                "/sent: sent is missing: CAP 1.2 requires it in every alert (a date-time such as 2026-09-06T08:00:00+07:00)",
            ),
            (
                "/scope",
                "/scope: scope is missing: CAP 1.2 requires it in every alert; Loa never assumes Public (one of Public, Restricted, Private)",
            ),
        ],
    ),
    (
        "required two",
        True,
        [
            (
                "/alert/sent",
                "/alert/sent: <sent> is missing: CAP 1.2 requires it in every alert (a date-time such as 2026-09-06T08:00:00+07:00)",
            ),
            (
                "/alert/scope",
                "/alert/scope: <scope> is missing: CAP 1.2 requires it in every alert; Loa never assumes Public (one of Public, Restricted, Private)",
            ),
        ],
    ),
    (
        "anyOf",
        False,
        [
            (
                "/info/0/area/0",
                "/info/0/area/0: this area has no target: add regions, a geocode (valueName VN, VN-PROVINCE or VN-WARD), a polygon or a circle",
            )
        ],
    ),
    (
        "anyOf",
        True,
        [
            (
                "/alert/info[1]/area[1]",
                "/alert/info[1]/area[1]: this area has no target: add a <geocode> (valueName VN, VN-PROVINCE or VN-WARD), a <polygon> or a <circle>",
            )
        ],
    ),
    (
        "month 13",
        False,
        [
            (
                "/sent",
                '/sent: "2026-13-06T08:00:00+07:00" is not a date-time such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "month 13",
        True,
        [
            (
                "/alert/sent",
                '/alert/sent: "2026-13-06T08:00:00+07:00" is not a date-time such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "no tz",
        False,
        [
            (
                "/info/0/expires",
                '/info/0/expires: "2026-09-07T08:00:00" has no time zone (write it as in 2026-09-06T08:00:00+07:00)',
            )
        ],
    ),
    (
        "no tz",
        True,
        [
            (
                "/alert/info[1]/expires",
                '/alert/info[1]/expires: "2026-09-07T08:00:00" has no time zone (write it as in 2026-09-06T08:00:00+07:00)',
            )
        ],
    ),
    (
        "bad expires",
        False,
        [
            (
                "/info/0/onset",
                '/info/0/onset: "tomorrow" is not a date-time such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "bad expires",
        True,
        [
            (
                "/alert/info[1]/onset",
                '/alert/info[1]/onset: "tomorrow" is not a date-time such as 2026-09-06T08:00:00+07:00',
            )
        ],
    ),
    (
        "two times",
        False,
        [
            (
                "/sent",
                '/sent: "2026-13-06T08:00:00+07:00" is not a date-time such as 2026-09-06T08:00:00+07:00',
            ),
            (
                "/info/0/expires",
                '/info/0/expires: "2026-09-07T08:00:00" has no time zone (write it as in 2026-09-06T08:00:00+07:00)',
            ),
        ],
    ),
    (
        "two times",
        True,
        [
            (
                "/alert/sent",
                '/alert/sent: "2026-13-06T08:00:00+07:00" is not a date-time such as 2026-09-06T08:00:00+07:00',
            ),
            (
                "/alert/info[1]/expires",
                '/alert/info[1]/expires: "2026-09-07T08:00:00" has no time zone (write it as in 2026-09-06T08:00:00+07:00)',
            ),
        ],
    ),
]


@pytest.mark.parametrize(
    ("case", "cap", "problems"),
    EXPECTED,
    ids=[f"{name}-{'cap' if cap else 'json'}" for name, cap, _ in EXPECTED],
)
def test_each_rule_tells_where_what_and_why(
    case: str, cap: bool, problems: list[tuple[str, str]]
) -> None:
    doc = copy.deepcopy(FULL_ALERT)
    CHANGES[case](doc)
    with pytest.raises(SchemaViolation) as refused:
        validate_json_alert(doc, cap=cap)
    got = [(p.pointer, p.message) for p in refused.value.problems]
    assert got == problems
    assert (refused.value.pointer, refused.value.message) == problems[0]


def test_the_unbroken_alert_passes_in_both_styles() -> None:
    validate_json_alert(copy.deepcopy(FULL_ALERT))
    validate_json_alert(copy.deepcopy(FULL_ALERT), cap=True)


def test_the_times_of_every_info_block_are_checked() -> None:
    doc = copy.deepcopy(FULL_ALERT)
    doc["info"].append({**doc["info"][0], "effective": "2026-09-06T08:00:00"})
    doc["info"][0]["onset"] = "soon"
    with pytest.raises(SchemaViolation) as refused:
        validate_json_alert(doc)
    assert [p.pointer for p in refused.value.problems] == ["/info/0/onset", "/info/1/effective"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty record"),
        (b"  \n", "empty record"),
        (b"[1]", "an alert is a JSON object, got an array"),
        (b"1", "an alert is a JSON object, got a number"),
        (b"1.5", "an alert is a JSON object, got a number"),
        (b"null", "an alert is a JSON object, got null"),
        (b'"x"', "an alert is a JSON object, got a string"),
        (b"true", "an alert is a JSON object, got a boolean"),
        (b"{", "not valid UTF-8 JSON: unexpected end of data"),
        (b"\xff", "not valid UTF-8 JSON: "),
    ],
)
def test_a_record_that_is_no_json_object_says_what_it_is(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedInput) as refused:
        decode_json_alert(raw)
    assert refused.value.message.startswith(message)
    assert decode_json_alert(b'{"a": 1}') == {"a": 1}


def _problems(change: Change) -> list[tuple[str, str]]:
    doc = copy.deepcopy(FULL_ALERT)
    change(doc)
    with pytest.raises(SchemaViolation) as refused:
        validate_json_alert(doc)
    return [(p.pointer, p.message) for p in refused.value.problems]


def test_a_missing_list_of_choices_names_the_choices() -> None:
    [(pointer, message)] = _problems(_drop("info", 0, "category"))
    assert pointer == "/info/0/category"
    assert message.endswith(
        "(one of Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra,"
        " CBRNE, Other)"
    )


def test_every_unknown_field_is_named() -> None:
    def two(doc: dict[str, Any]) -> None:
        doc["zz"] = doc["zy"] = 1

    assert _problems(two) == [
        ("the alert", 'the alert: "zz", "zy" is not a field of Loa\'s JSON alert here')
    ]


def test_an_unknown_field_in_an_area_is_not_mistaken_for_a_missing_target() -> None:
    assert _problems(_set(*AREA, "zz", to=1)) == [
        ("/info/0/area/0", '/info/0/area/0: "zz" is not a field of Loa\'s JSON alert here')
    ]


def test_a_time_the_schema_refuses_does_not_hide_the_times_after_it() -> None:
    def two(doc: dict[str, Any]) -> None:
        doc["sent"] = 12345
        doc["info"][0]["expires"] = "2026-09-07T08:00:00"

    assert [p for p, _ in _problems(two)] == ["/sent", "/info/0/expires"]
