"""Who may change an alert, on the real broker and a running worker (README "Who may change an
alert"): lineage authority, status isolation, full reference triples; and ``loa publish``'s
exit-code contract, every case run with and without ``--json``."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.ingest.signatures import write_key_pair
from streams.kafkaio.clients import create_topics
from tests.integration.conftest import LiveLoa, alert, run_loa

pytestmark = pytest.mark.integration

NATIONAL = "nchmf.gov.vn"
QUANG_NINH = "ubnd.quangninh.gov.vn"
QUANG_NGAI = "pctt.quangngai.gov.vn"
SENT = "2026-11-23T08:00:00+07:00"


def message(
    sender: str,
    kind: str = "Alert",
    refers: str | None = None,
    *,
    regions: tuple[str, ...] = ("VN-22",),
    status: str = "Actual",
    **info: Any,
) -> dict[str, Any]:
    doc = alert(f"AU-{uuid.uuid4().hex[:8]}", list(regions), severity="Severe", **info)
    doc.update(sender=sender, msgType=kind, status=status)
    if refers is not None:
        doc["references"] = refers
    if kind == "Cancel":
        del doc["info"]
    return doc


def ref(doc: dict[str, Any], *, sent: str | None = None) -> str:
    return f"{doc['sender']},{doc['identifier']},{sent or doc['sent']}"


async def decide(live: LiveLoa, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    offset = await live.publish(orjson.dumps(doc), signed_by=doc["sender"])
    return await live.decision(doc["sender"], doc["identifier"], offset=offset)


async def test_a_province_can_neither_update_nor_cancel_the_national_alert(live: LiveLoa) -> None:
    national = message(NATIONAL, regions=("VN-22", "VN-51"))
    outcome, first = await decide(live, national)
    assert outcome == "accepted"
    # Quảng Ninh's "the storm has passed", and Quảng Ngãi's Cancel: neither may touch it
    calm = message(QUANG_NINH, "Update", ref(national), headline="Bão đã qua")
    outcome, record = await decide(live, calm)
    assert (outcome, record["code"], record["pointer"]) == (
        "rejected",
        "not_lineage_owner",
        "/references",
    )
    assert f'belongs to agency "{NATIONAL}"' in record["message"]
    outcome, record = await decide(live, message(QUANG_NGAI, "Cancel", ref(national)))
    assert (outcome, record["code"]) == ("rejected", "not_lineage_owner")
    # the fan-out of version 1 ran to its end: nothing stopped it
    progress = await live.fanned_out(first["alert_id"])
    assert all(p.stopped is None and p.emitted == p.targeted for p in progress.values())
    # and the national authority's own next Update is version 2
    outcome, record = await decide(
        live, message(NATIONAL, "Update", ref(national), regions=("VN-22",))
    )
    assert (outcome, record["alert_id"], record["version"]) == ("accepted", first["alert_id"], 2)


async def test_the_national_authority_may_cancel_a_provincial_alert_in_its_jurisdiction(
    live: LiveLoa,
) -> None:
    provincial = message(QUANG_NINH)
    outcome, first = await decide(live, provincial)
    assert outcome == "accepted" and first["owner"] == QUANG_NINH
    outcome, record = await decide(live, message(NATIONAL, "Cancel", ref(provincial)))
    assert (outcome, record["alert_id"], record["version"]) == ("accepted", first["alert_id"], 2)
    assert record["owner"] == QUANG_NINH
    # the lineage stays Quảng Ninh's: another province still may not touch it
    outcome, record = await decide(live, message(QUANG_NGAI, "Cancel", ref(provincial)))
    assert (outcome, record["code"]) == ("rejected", "not_lineage_owner")


@pytest.mark.parametrize("status", ["Exercise", "Test"])
async def test_a_drill_never_changes_an_actual_alert(live: LiveLoa, status: str) -> None:
    actual = message(NATIONAL, regions=("VN-51",))
    outcome, first = await decide(live, actual)
    assert outcome == "accepted"
    for kind in ("Cancel", "Update"):
        drill = message(NATIONAL, kind, ref(actual), status=status, regions=("VN-51",))
        outcome, record = await decide(live, drill)
        assert (outcome, record["code"]) == ("rejected", "status_mismatch"), record
    progress = await live.fanned_out(first["alert_id"])
    assert all(p.stopped is None and p.emitted == p.targeted for p in progress.values())
    outcome, record = await decide(
        live, message(NATIONAL, "Update", ref(actual), regions=("VN-51",))
    )
    assert (outcome, record["version"]) == ("accepted", 2)


async def test_a_reference_must_match_sender_identifier_and_sent(live: LiveLoa) -> None:
    original = message(NATIONAL)
    assert (await decide(live, original))[0] == "accepted"
    wrong_sent = ref(original, sent="2026-11-23T08:00:01+07:00")
    outcome, record = await decide(live, message(NATIONAL, "Update", wrong_sent))
    assert (outcome, record["code"]) == ("rejected", "unknown_reference")
    assert 'sent "2026-11-23T08:00:01+07:00" differs' in record["message"]
    wrong_sender = f"{QUANG_NINH},{original['identifier']},{original['sent']}"
    outcome, record = await decide(live, message(NATIONAL, "Update", wrong_sender))
    assert (outcome, record["code"]) == ("rejected", "unknown_reference")
    assert f'sender "{QUANG_NINH}" differs' in record["message"]


async def test_publish_exit_codes_follow_one_table_and_json_is_one_object(
    live: LiveLoa, tmp_path: Path
) -> None:
    key_file, _ = write_key_pair(live.keys["test.agency.vn"], tmp_path / "keys")

    def file_of(doc: dict[str, Any] | bytes) -> str:
        path = tmp_path / f"{uuid.uuid4().hex}.alert"
        path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc))
        return str(path)

    good = file_of(alert(f"EX-{uuid.uuid4().hex[:8]}", ["VN-44"]))
    circle = alert(f"EX-{uuid.uuid4().hex[:8]}", [])
    circle["info"][0]["area"] = [{"areaDesc": "Hà Nội", "circle": ["21.03,105.85 3"]}]
    rejected = alert(f"EX-{uuid.uuid4().hex[:8]}", ["VN-99"])
    idle = dataclasses.replace(
        live.settings, topic_prefix=f"idle-{uuid.uuid4().hex[:8]}", app_id="idle"
    )
    await create_topics(idle)
    key = ("--key", str(key_file))
    cases: list[tuple[str, Any, tuple[str, ...], int]] = [
        ("accepted", live.settings, (good, *key), 0),
        ("duplicate", live.settings, (good, *key), 0),
        ("accepted with warnings", live.settings, (file_of(circle), *key), 8),
        ("rejected", live.settings, (file_of(rejected), *key), 1),
        ("usage", live.settings, (good, "--timeout", "soon"), 2),
        (
            "no decision",
            idle,
            (file_of(alert(f"EX-{uuid.uuid4().hex}", ["VN"])), *key, "--timeout", "2"),
            4,
        ),
        ("not an alert", live.settings, (file_of(b"{"), *key), 7),
        ("no such file", live.settings, (str(tmp_path / "missing.json"), *key), 7),
        ("no such key", live.settings, (good, "--key", str(tmp_path / "missing.key")), 7),
    ]
    for name, settings, args, expected in cases:
        code, out, err = await run_loa(settings, "publish", *args, "--json")
        assert code == expected, (name, out, err)
        docs = [orjson.loads(line) for line in out.splitlines() if line.strip()]
        assert len(docs) == 1, (name, out)
        doc = docs[0]
        assert doc.get("exit_code", doc.get("error", {}).get("exit_code")) == expected, name
        if name == "accepted with warnings":
            assert [w["code"] for w in doc["warnings"]] == ["located_only"]
        if "accepted" not in name and name != "duplicate":  # the text form exits the same way
            code, _, err = await run_loa(settings, "publish", *args)
            assert code == expected, (name, err)


async def test_status_of_a_lineage_shows_every_version_and_who_sent_it(live: LiveLoa) -> None:
    first = message(NATIONAL, regions=("VN-51",))
    outcome, record = await decide(live, first)
    assert outcome == "accepted"
    drill = message(NATIONAL, "Cancel", ref(first), status="Exercise")
    assert (await decide(live, drill))[1]["code"] == "status_mismatch"
    update = message(NATIONAL, "Update", ref(first), regions=("VN-51",), headline="Bão mạnh lên")
    assert (await decide(live, update))[0] == "accepted"
    await live.fanned_out(record["alert_id"], version=2)
    code, out, err = await run_loa(live.settings, "status", record["alert_id"], "--json")
    assert code == 0, err
    versions = orjson.loads(out)["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert [[(m["msg_type"], m["status"]) for m in v["messages"]] for v in versions] == [
        [("Alert", "Actual")],
        [("Update", "Actual")],
    ]
    assert versions[1]["partitions_done"] == versions[1]["partitions"]
    code, out, err = await run_loa(live.settings, "status", record["alert_id"])
    assert code == 0, err
    assert f"v1 Alert {NATIONAL}/{first['identifier']} by {NATIONAL} (Actual)" in out
    assert f"v2 Update {NATIONAL}/{update['identifier']} by {NATIONAL} (Actual)" in out


async def test_a_decision_says_who_it_reaches_and_warns_of_nobody(live: LiveLoa) -> None:
    province = message(NATIONAL, regions=("VN-22",))
    outcome, record = await decide(live, province)
    assert outcome == "accepted" and record["warnings"] == []
    reach = record["reach"]
    expected = live.expected(["VN-22"])
    assert (reach["complete"], reach["total"], reach["by_region_codes"]) == (
        True,
        len(expected),
        len(expected),
    )
    assert sum(reach["by_channel"].values()) == len(expected)
    # a circle on the Quảng Ninh coast where no subscriber shared a location: accepted, and
    # the decision says it reaches nobody and why
    coast = message(NATIONAL, regions=())
    coast["info"][0]["area"] = [{"areaDesc": "Hạ Long", "circle": ["20.95,107.08 5"]}]
    outcome, record = await decide(live, coast)
    assert outcome == "accepted"
    assert [w["code"] for w in record["warnings"]] == ["located_only", "empty_audience"]
    assert record["reach"]["total"] == 0
    # a circle across the Lao border: the part in Laos is named
    border = message(NATIONAL, regions=())
    border["info"][0]["area"] = [{"areaDesc": "Lao Bảo", "circle": ["16.62,106.59 15"]}]
    outcome, record = await decide(live, border)
    assert outcome == "accepted"
    assert record["warnings"][0]["code"] == "partly_outside"
    assert record["warnings"][0]["pointer"] == "/info/0/area/0/circle/0"
    # and a circle wholly in Cambodia is refused, naming the shape
    abroad = message(NATIONAL, regions=())
    abroad["info"][0]["area"] = [{"areaDesc": "Phnom Penh", "circle": ["11.56,104.92 10"]}]
    outcome, record = await decide(live, abroad)
    assert (outcome, record["code"]) == ("rejected", "unknown_region")
    assert "circle 1 of area 1 lies wholly outside Viet Nam" in record["message"]
