"""Docs are tests (preview half) and the agency's two commands on the real broker: every sample
and documented example previews as its document states; ``loa preview`` of an Update or Cancel
is judged against the live lifecycle; ``loa publish`` exit codes and ``--json``."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.agency.preview import Preview, preview
from streams.ingest import Rejected
from streams.ingest.signatures import write_key_pair
from streams.kafkaio.clients import create_topics, make_admin, read_to_end
from tests.integration.conftest import TEST_AGENCY, LiveLoa, alert, run_loa
from tests.tools.documented import Example, examples

pytestmark = pytest.mark.integration

EXAMPLES = examples()


def _previewed(result: Preview | Rejected) -> str:
    if isinstance(result, Rejected):
        return f"rejected {result.code.value} {result.pointer or '-'}"
    return f"reaches {result.reached}"


async def test_every_documented_example_previews_as_documented(live: LiveLoa) -> None:
    wrong: dict[str, tuple[str, str]] = {}
    for example in EXAMPLES:
        result = await preview(live.settings, example.raw, live.regions)
        if _matches(live, example, result):
            continue
        wrong[example.name] = (example.preview, _previewed(result))
    assert wrong == {}


def _matches(live: LiveLoa, example: Example, result: Preview | Rejected) -> bool:
    """``reaches [test audience] CODE ... [+ shapes]`` or ``rejected CODE POINTER``."""
    words = example.preview.split()
    if words[0] == "rejected":
        return _previewed(result) == example.preview
    if not isinstance(result, Preview) or words[0] != "reaches":
        return False
    test_only = words[1:3] == ["test", "audience"]
    shapes = words[-2:] == ["+", "shapes"]
    codes = words[3 if test_only else 1 : -2 if shapes else None]
    by_region = live.expected(codes, test_only=test_only)
    # shapes add the subscribers located inside them (and, for a test alert, flagged ones only)
    return (result.reached >= len(by_region)) if shapes else result.reached == len(by_region)


async def test_loa_preview_of_the_documented_example_prints_its_audience(
    live: LiveLoa, tmp_path: Path
) -> None:
    (readme,) = [e for e in EXAMPLES if e.name == "docs/alerts.md example 1"]
    path = tmp_path / "alert.json"
    path.write_bytes(readme.raw)
    code, out, err = await run_loa(live.settings, "preview", str(path))
    assert code == 0, err
    assert f"would reach {len(live.expected(['VN-22'])):,} of " in out
    assert "by task: alert " in out


def _ref(identifier: str) -> str:
    return f"{TEST_AGENCY},{identifier},2026-11-23T08:00:00+07:00"


def _cancel(identifier: str, of: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "sender": TEST_AGENCY,
        "sent": "2026-11-23T09:00:00+07:00",
        "status": "Actual",
        "msgType": "Cancel",
        "scope": "Public",
        "references": _ref(of),
    }


async def test_preview_of_update_and_cancel_uses_the_live_lifecycle_and_sends_nothing(
    live: LiveLoa, tmp_path: Path
) -> None:
    original = f"PV-{uuid.uuid4().hex[:8]}"
    raw = orjson.dumps(alert(original, ["VN-42"]))
    offset = await live.publish(raw)
    outcome, _ = await live.decision(TEST_AGENCY, original, offset=offset)
    assert outcome == "accepted"
    await live.fanned_out(f"{TEST_AGENCY}/{original}")
    served, new = live.expected(["VN-42"]), live.expected(["VN-40"])

    update = alert(f"{original}-u1", ["VN-42", "VN-40"], headline="Cập nhật: lũ lên nhanh")
    update.update(msgType="Update", references=_ref(original))
    result = await preview(live.settings, orjson.dumps(update), live.regions)
    assert isinstance(result, Preview)
    assert (result.alert_id, result.version) == (f"{TEST_AGENCY}/{original}", 2)
    assert result.by_kind == {"alert": len(new), "update": len(served), "cancel": 0}

    result = await preview(
        live.settings, orjson.dumps(_cancel(f"{original}-x", original)), live.regions
    )
    assert isinstance(result, Preview)
    assert result.by_kind == {"alert": 0, "update": 0, "cancel": len(served)}

    again = await preview(live.settings, raw, live.regions)
    assert isinstance(again, Preview) and again.duplicate and again.reached == 0

    path = tmp_path / "update.json"
    path.write_bytes(orjson.dumps(update))
    code, out, err = await run_loa(live.settings, "preview", str(path))
    assert code == 0, err
    assert f"by task: alert {len(new):,}, update {len(served):,}, cancel 0" in out
    # nothing was sent: the update is still unknown to ingest, so it is version 2 when published
    offset = await live.publish(orjson.dumps(update))
    outcome, record = await live.decision(TEST_AGENCY, f"{original}-u1", offset=offset)
    assert (outcome, record["version"]) == ("accepted", 2)


async def test_preview_of_an_update_of_an_unknown_alert_says_unknown_reference(
    live: LiveLoa,
) -> None:
    orphan = alert(f"PV-{uuid.uuid4().hex[:8]}", ["VN-22"])
    orphan.update(msgType="Update", references=_ref("NEVER-PUBLISHED"))
    result = await preview(live.settings, orjson.dumps(orphan), live.regions)
    assert isinstance(result, Rejected)
    assert (result.code.value, result.pointer) == ("unknown_reference", "/references")


async def test_loa_publish_exit_codes_and_json_decision_record(
    live: LiveLoa, tmp_path: Path
) -> None:
    key_file, _ = write_key_pair(live.keys[TEST_AGENCY], tmp_path / "keys")

    async def publish(raw: bytes, *args: str) -> tuple[int, str, str]:
        path = tmp_path / f"{uuid.uuid4().hex}.alert"
        path.write_bytes(raw)
        return await run_loa(live.settings, "publish", str(path), "--key", str(key_file), *args)

    good = orjson.dumps(alert(f"PB-{uuid.uuid4().hex[:8]}", ["VN-44"]))
    code, out, err = await publish(good)
    assert (code, out.split()[0]) == (0, "accepted"), err
    code, out, err = await publish(good, "--json")
    decided = orjson.loads(out)
    assert (code, decided["outcome"], decided["record"]["code"]) == (0, "duplicate", "duplicate")

    incomplete = alert(f"PB-{uuid.uuid4().hex[:8]}", ["VN-44"])
    del incomplete["scope"], incomplete["status"]
    code, out, err = await publish(orjson.dumps(incomplete), "--json")
    decided = orjson.loads(out)
    assert (code, decided["outcome"]) == (1, "rejected"), err
    record = decided["record"]
    assert (record["code"], record["pointer"]) == ("schema", "/status")
    assert [e["pointer"] for e in record["errors"]] == ["/status", "/scope"]
    code, out, _ = await publish(orjson.dumps(incomplete))
    assert code == 1 and out.startswith("rejected code=schema pointer=/status")
    assert "also: /scope: scope is missing" in out

    before = await _inbound_count(live)
    for raw in (b"", b"   \n", b"{", b"<alert"):
        code, out, err = await publish(raw)
        assert code == 7, (raw, out, err)
        assert out.startswith("not sent: malformed") and "sent (" not in out
    assert await _inbound_count(live) == before  # none of them was sent

    # topics no worker serves: the record is written and no decision can come (a tiny
    # --timeout against the live worker was a race it sometimes won under load)
    idle = dataclasses.replace(
        live.settings, topic_prefix=f"idle-{uuid.uuid4().hex[:8]}", app_id="idle"
    )
    await create_topics(idle)
    path = tmp_path / "idle.alert"
    path.write_bytes(orjson.dumps(alert(f"PB-{uuid.uuid4().hex[:8]}", ["VN"])))
    code, out, _ = await run_loa(
        idle, "publish", str(path), "--key", str(key_file), "--timeout", "2"
    )
    assert (code, out.split(":")[0]) == (4, "no decision")


async def _inbound_count(live: LiveLoa) -> int:
    return len([r async for r in read_to_end(live.settings, live.settings.inbound_topic)])


async def test_each_decision_on_an_agencys_record_is_on_its_decision_topic_once(
    live: LiveLoa, tmp_path: Path
) -> None:
    """What an agency's ACL lets it read (``<prefix>.decisions.<sender>``) holds exactly its
    decisions, the bytes of the shared topics' records; an unknown sender makes no topic."""
    key_file, _ = write_key_pair(live.keys[TEST_AGENCY], tmp_path / "keys")
    s = live.settings
    good = alert(f"DT-{uuid.uuid4().hex[:8]}", ["VN-44"])
    bad = alert(f"DT-{uuid.uuid4().hex[:8]}", ["VN-44"])
    del bad["msgType"]
    stranger = alert(f"DT-{uuid.uuid4().hex[:8]}", ["VN-44"])
    stranger["sender"] = "nobody.example.vn"
    offsets = {}
    for name, doc in (("good", good), ("again", good), ("bad", bad), ("stranger", stranger)):
        path = tmp_path / f"{name}.json"
        path.write_bytes(orjson.dumps(doc))
        code, out, err = await run_loa(s, "publish", str(path), "--key", str(key_file), "--json")
        assert code in (0, 1), (name, out, err)
        offsets[name] = orjson.loads(out)["offset"]

    def by_offset(records: list[Any]) -> dict[int, bytes]:
        """Decision records by the inbound offset they decide (each offset once)."""
        found = {}
        for r in records:
            doc = orjson.loads(r.value)
            source = doc.get("source") or {}
            if "inbound_offset" not in doc and source.get("topic") != s.inbound_topic:
                continue  # a rejected order, not a decision on an inbound record
            offset = doc.get("inbound_offset", source.get("offset"))
            assert offset not in found, f"two decisions on inbound offset {offset}"
            found[offset] = r.value
        return found

    def sender(value: bytes) -> str:
        doc = orjson.loads(value)
        return str(doc.get("sender") or doc.get("message_id", "").split("/")[0])

    # other tests of this module published for the test agency too: its topic holds exactly
    # the shared topics' decisions whose sender it is, these three among them
    own = by_offset([r async for r in read_to_end(s, s.decisions_topic(TEST_AGENCY))])
    shared = [r async for r in read_to_end(s, s.accepted_topic)]
    shared += [r async for r in read_to_end(s, s.rejected_topic)]
    everyone = by_offset(shared)
    assert own == {o: v for o, v in everyone.items() if sender(v) == TEST_AGENCY}
    assert {offsets[n] for n in ("good", "again", "bad")} <= set(own)
    assert offsets["stranger"] in everyone and offsets["stranger"] not in own
    admin = make_admin(s)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert s.decisions_topic("nobody.example.vn") not in topics
