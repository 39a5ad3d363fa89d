"""``loa publish`` without a broker: what is never sent, and how each outcome is reported."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.agency.publish import EXIT_CODES, Outcome, Published, _parse, publish_file
from streams.settings.model import Settings

# nothing listens there: a file refused locally must not even try to connect
NOWHERE = Settings(bootstrap_servers="127.0.0.1:9")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "malformed"),
        (b"  \n", "malformed"),
        (b"{", "malformed"),
        (b"[1]", "malformed"),
        (b"<alert", "malformed"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><alert/>", "forbidden_xml"),
        (b"x" * 300_000, "too_large"),
    ],
)
def test_a_file_that_is_not_an_alert_is_not_sent_and_exits_7(raw: bytes, code: str) -> None:
    result = asyncio.run(publish_file(NOWHERE, raw, None, wait=True, timeout_s=1))
    assert (result.outcome, result.exit_code, result.offset) == (Outcome.NOT_AN_ALERT, 7, None)
    assert result.text().startswith(f"not sent: {code}")
    assert orjson.loads(result.json())["outcome"] == "not_an_alert"


def test_exit_codes_0_accepted_1_rejected_7_not_an_alert_4_undecided() -> None:
    assert {o.value: c for o, c in EXIT_CODES.items()} == {
        "accepted": 0,
        "duplicate": 0,
        "rejected": 1,
        "not_an_alert": 7,
        "no_decision": 4,
        "sent": 0,
    }


def test_rejected_text_lists_every_fault_and_json_keeps_the_record() -> None:
    record = {
        "code": "schema",
        "pointer": "/status",
        "message": "/status: status is missing",
        "errors": [
            {"pointer": "/status", "message": "/status: status is missing"},
            {"pointer": "/scope", "message": "/scope: scope is missing"},
        ],
    }
    result = Published(Outcome.REJECTED, record, offset=7)
    assert result.text().splitlines() == [
        "rejected code=schema pointer=/status: /status: status is missing",
        "  also: /scope: scope is missing",
    ]
    assert orjson.loads(result.json()) == {
        "outcome": "rejected",
        "offset": 7,
        "record": record,
        "warnings": [],
        "exit_code": 1,
    }


def test_an_accepted_decision_with_warnings_exits_8_and_prints_each_warning() -> None:
    record = {
        "message_id": "s/1",
        "alert_id": "s/1",
        "version": 1,
        "priority": "extreme",
        "reach": {
            "total": 0,
            "by_channel": {"oa": 0},
            "complete": True,
            "partitions": 4,
            "partitions_counted": 4,
        },
        "warnings": [{"code": "empty_audience", "message": "reaches nobody", "pointer": "/info"}],
    }
    result = Published(Outcome.ACCEPTED, record, 3)
    assert result.exit_code == 8
    assert "warning empty_audience /info: reaches nobody" in result.text()
    assert orjson.loads(result.json())["warnings"] == record["warnings"]
    clean = Published(Outcome.ACCEPTED, {**record, "warnings": []}, 3)
    assert clean.exit_code == 0


def test_publish_reads_sender_and_identifier_of_cap_and_json_before_sending() -> None:
    xml = (
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>QN-2026-1</identifier>'
        b"<sender>ubnd.quangninh.gov.vn</sender></alert>"
    )
    assert _parse(xml, 64 * 1024)["identifier"] == "QN-2026-1"
    assert _parse(b'{"sender": "a.vn", "identifier": "X-1"}', 64 * 1024)["sender"] == "a.vn"
