"""Conservation on the real broker: every inbound record ends as exactly one of accepted,
duplicate or rejected (with the right code), hostile records included, and valid alerts that
come after them are still fanned out."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.ingest.signatures import signature_headers
from streams.kafkaio.clients import make_producer, read_to_end
from tests.integration.conftest import TEST_AGENCY, LiveLoa, alert

pytestmark = pytest.mark.integration

HOSTILE_XML = Path(__file__).resolve().parents[1] / "data" / "cap" / "hostile"
#: Each record is one ingest transaction (a few per second on a loaded 2-core machine): enough
#: for every catalogue entry to come up many times between valid alerts.
RECORDS = 600
CAP_1_2 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_1_1 = "urn:oasis:names:tc:emergency:cap:1.1"

#: (value, headers or None = "sign it", expected outcome or rejection code)
Record = tuple[bytes | None, list[tuple[str, bytes]] | None, str]


def _signed(live: LiveLoa, raw: bytes, by: str = TEST_AGENCY) -> list[tuple[str, bytes]]:
    return list(signature_headers(live.keys[by], raw))


def _cap(
    identifier: str,
    ward: str,
    *,
    namespace: str = CAP_1_2,
    drop: str = "",
    extra: str = "",
    certainty: str = "Likely",
) -> bytes:
    """A CAP alert of the test agency to one ward; ``drop`` leaves out one alert element."""
    head = {
        "identifier": identifier,
        "sender": TEST_AGENCY,
        "sent": "2026-11-23T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
    }
    elements = "".join(f"<{k}>{v}</{k}>" for k, v in head.items() if k != drop)
    return (
        f'<alert xmlns="{namespace}">{elements}{extra}<info><category>Met</category>'
        "<event>Lũ quét</event><urgency>Immediate</urgency><severity>Extreme</severity>"
        f"<certainty>{certainty}</certainty><headline>Cảnh báo lũ quét</headline>"
        f"<area><areaDesc>test</areaDesc><geocode><valueName>VN</valueName><value>{ward}</value>"
        "</geocode></area></info></alert>"
    ).encode()


def _nonconforming(run: str, ward: str) -> list[Record]:
    """CAP 1.2 conformance (issue 11): what must be rejected, never defaulted or widened."""

    def without(key: str, n: str) -> bytes:
        doc = alert(f"{run}-{n}", [ward])
        del doc[key]
        return orjson.dumps(doc)

    def json_with(n: str, **fields: Any) -> bytes:
        return orjson.dumps({**alert(f"{run}-{n}", [ward]), **fields})

    only_desc = alert(f"{run}-desc", [ward])
    only_desc["info"][0]["area"] = [{"areaDesc": "no target"}]
    records: list[tuple[bytes, str]] = [
        (without("status", "no-status"), "schema"),
        (without("msgType", "no-type"), "schema"),
        (without("scope", "no-scope"), "schema"),
        (json_with("empty-ref", msgType="Update", references=""), "schema"),
        (json_with("bad-ref", msgType="Update", references="a.vn,X-1"), "schema"),
        (json_with("restricted", scope="Restricted"), "schema"),
        (json_with("private", scope="Private", addresses="ops"), "unsupported"),
        (orjson.dumps(only_desc), "schema"),
        (_cap(f"{run}-x-no-status", ward, drop="status"), "schema"),
        (_cap(f"{run}-x-no-scope", ward, drop="scope"), "schema"),
        (_cap(f"{run}-x-empty-ref", ward, extra="<references/>"), "schema"),
        (_cap(f"{run}-x-empty-restr", ward, extra="<restriction/>"), "schema"),
        (_cap(f"{run}-x-empty-addr", ward, extra="<addresses/>"), "schema"),
        (_cap(f"{run}-x-10", ward, namespace="http://www.incident.com/cap/1.0"), "unsupported"),
        (_cap(f"{run}-x-11vl", ward, namespace=CAP_1_1, certainty="Very Likely"), "unsupported"),
        ((HOSTILE_XML / "cap10.xml").read_bytes(), "unsupported"),
        ((HOSTILE_XML / "cap11-missing-elements.xml").read_bytes(), "schema"),
    ]
    return [(raw, None, code) for raw, code in records]


def _catalogue(live: LiveLoa, run: str) -> list[Record]:
    """One record of each kind: (value, headers, expected outcome or rejection code)."""
    ward = live.regions.ward_codes[7]

    def valid(n: str, regions: list[str] | None = None, **info: Any) -> bytes:
        return orjson.dumps(alert(f"{run}-{n}", regions or [ward], **info))

    ok = valid("ok")
    qn = orjson.dumps(
        {
            **alert(f"{run}-qn", ["VN-31"], severity="Severe"),
            "sender": "ubnd.quangninh.gov.vn",
        }
    )
    foreign = orjson.dumps({**alert(f"{run}-fs", [ward]), "sender": "nchmf.gov.vn"})
    records: list[Record] = [
        (ok, _signed(live, ok), "accepted"),
        (ok, _signed(live, ok), "duplicate"),
        (valid("bad-sig"), _signed(live, b"other bytes"), "bad_signature"),
        (valid("no-sig"), [], "bad_signature"),
        (foreign, _signed(live, foreign, "ubnd.quangninh.gov.vn"), "bad_signature"),
        (qn, _signed(live, qn, "ubnd.quangninh.gov.vn"), "out_of_jurisdiction"),
        (b"", [], "malformed"),
        (None, [], "malformed"),
        (b"\xff\xfe\xfd not utf-8 {", [], "malformed"),
        (b"[" * 100_000 + b"]" * 100_000, [], "malformed"),
        (b"x" * (10 * 1024 * 1024), [], "too_large"),
        (orjson.dumps({"identifier": "x"}), [], "schema"),
        (valid("region", ["VN-99"]), None, "unknown_region"),
        (valid("expired", expires="2020-01-01T00:00:00+07:00"), None, "expired"),
    ]
    for name, code in (
        ("billion-laughs.xml", "forbidden_xml"),
        ("xxe-file.xml", "forbidden_xml"),
        ("xxe-http.xml", "forbidden_xml"),
        ("parameter-entities.xml", "forbidden_xml"),
        ("invalid-utf8.xml", "malformed"),
        ("truncated.xml", "malformed"),
    ):
        records.append(((HOSTILE_XML / name).read_bytes(), [], code))
    records += _nonconforming(run, ward)
    deep = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">' + b"<a>" * 10_000
    records.append((deep + b"</a>" * 10_000 + b"</alert>", [], "forbidden_xml"))
    # headers=None above means: sign it (it must fail for its content, not its signature)
    return [(v, _signed(live, v) if h is None and v else h or [], c) for v, h, c in records]


@pytest.mark.timeout(600)
async def test_every_record_ends_as_exactly_one_decision_and_valid_alerts_still_fan_out(
    live: LiveLoa,
) -> None:
    run = f"K{uuid.uuid4().hex[:6]}"
    catalogue = _catalogue(live, run)
    rng = random.Random(7)
    stream: list[Record] = []
    for i in range(RECORDS - 1):
        if i % 4 == 0:  # a valid alert every fourth record, each new, to a single ward:
            ward = live.regions.ward_codes[i % 3000]  # Loa JSON, CAP 1.2 and CAP 1.1 in turn
            raw = (
                orjson.dumps(alert(f"{run}-v{i}", [ward]))
                if i % 12 == 0
                else _cap(f"{run}-v{i}", ward, namespace=CAP_1_2 if i % 12 == 4 else CAP_1_1)
            )
            stream.append((raw, _signed(live, raw), "accepted"))
        else:
            value, headers, code = rng.choice(catalogue[2:])
            stream.append((value, headers, code))
    stream[:0] = catalogue[:2]  # the first acceptance and its re-publish, in that order
    last = orjson.dumps(alert(f"{run}-last", ["VN-48"]))
    stream.append((last, _signed(live, last), "accepted"))

    producer = make_producer(live.settings, max_request_size=12 * 1024 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(
                live.settings.inbound_topic, value, key=b"conservation", headers=headers or None
            )
            for value, headers, _ in stream
        ]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    expected = dict(zip(offsets, (code for _, _, code in stream), strict=True))

    decided = await _decisions(live, set(offsets))
    wrong = {o: (expected[o], d) for o, d in decided.items() if expected[o] != d[0]}
    assert wrong == {}  # (checked first: what was decided says more than what is missing)
    undecided = sorted(set(offsets) - set(decided))
    assert undecided == [], f"{len(undecided)} inbound records without a decision"
    assert all(n == 1 for n in Counter(o for o, _ in _all_decisions(decided)).values())

    alert_id = f"{TEST_AGENCY}/{run}-last"
    await live.fanned_out(alert_id)
    counts, _ = await live.tasks(alert_id, "extreme")
    assert set(counts) == live.expected(["VN-48"])
    assert max(counts.values()) == 1


def _all_decisions(decided: dict[int, tuple[str, int]]) -> list[tuple[int, str]]:
    return [(o, code) for o, (code, n) in decided.items() for _ in range(n)]


async def _decisions(live: LiveLoa, offsets: set[int]) -> dict[int, tuple[str, int]]:
    """offset -> (outcome or rejection code, how many decisions named that offset)."""
    settings = live.settings
    found: dict[int, tuple[str, int]] = {}

    def note(offset: int | None, outcome: str) -> None:
        if offset in offsets:
            previous = found.get(offset)
            found[offset] = (outcome, 1 if previous is None else previous[1] + 1)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 480
    while len(found) < len(offsets) and loop.time() < deadline:
        found.clear()
        async for record in read_to_end(settings, settings.rejected_topic):
            doc = orjson.loads(record.value)
            source = doc["source"]
            if source["topic"] == settings.inbound_topic:
                note(source["offset"], doc["code"])
        async for record in read_to_end(settings, settings.accepted_topic):
            note(orjson.loads(record.value).get("inbound_offset"), "accepted")
        if len(found) < len(offsets):
            await asyncio.sleep(2)
    return found
