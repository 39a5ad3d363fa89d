"""The agency console against a real broker and a real worker: sessions and their defences,
the second person for Actual alerts, a ward alert from draft to delivered receipts and its
Cancel, agency isolation, hostile input, and the audit trail read by an independent consumer."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.console import Console
from tests.integration.conftest import run_loa
from tests.integration.console_kit import (
    PASSWORD,
    QUANG_NGAI,
    WARD,
    Client,
    LiveConsole,
    draft,
    live_console,
)
from tests.tools.xmlsigning import tls_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def live(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveConsole]:
    async with live_console(kafka_bootstrap, tmp_path_factory) as live:
        yield live


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _client(live: LiveConsole, http: aiohttp.ClientSession, user: str) -> Client:
    client = Client(http, live.url)
    response = await client.login(user)
    assert response.status == 200, await response.text()
    return client


# --- sessions ----------------------------------------------------------------------------------


async def test_login_sets_a_strict_session_cookie_and_every_answer_carries_the_csp(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    client = Client(http, live.url)
    response = await client.login("author")
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    body = await response.json()
    assert body["user"] == "author" and body["agency"] == QUANG_NGAI
    assert body["roles"] == ["author"] and body["csrf"]
    for path in ("/", "/api/me", "/api/nothing-here"):
        async with http.get(
            live.url + path, headers={"Cookie": f"loa_console={client.cookie}"}
        ) as r:
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
    assert (await client.call("GET", "/api/me"))[1]["user"] == "author"
    assert (await client.call("POST", "/api/logout"))[0] == 204
    assert (await client.call("GET", "/api/me"))[0] == 401


async def test_a_state_change_without_the_csrf_token_is_refused(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    client = await _client(live, http, "author")
    status, body = await client.call("POST", "/api/drafts", draft(), csrf=False)
    assert (status, body["error"]) == (403, "csrf")
    client.csrf = "x" * 43
    status, body = await client.call("POST", "/api/logout")
    assert (status, body["error"]) == (403, "csrf")
    assert (await Client(http, live.url).call("GET", "/api/drafts"))[0] == 401


async def test_unknown_user_and_wrong_password_answer_alike_then_the_user_is_rate_limited(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    client = Client(http, live.url)
    unknown = await client.login("nobody-here", "whatever password")
    wrong = await client.login("viewer", "not the password at all")
    assert unknown.status == wrong.status == 401
    assert await unknown.json() == await wrong.json()
    for _ in range(live.console.settings.console_login_attempts - 1):
        assert (await client.login("viewer", "not the password at all")).status == 401
    limited = await client.login("viewer", "not the password at all")
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    # the right password waits too: a guesser learns nothing from it
    assert (await client.login("viewer")).status == 429


# --- the second person ---------------------------------------------------------------------------


async def test_an_author_alone_cannot_send_an_actual_alert(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    status, record = await author.call("POST", "/api/drafts", draft())
    assert status == 201, record
    status, record = await author.call("POST", f"/api/drafts/{record['id']}/submit")
    assert (status, record["state"]) == (200, "awaiting_approval")
    status, body = await author.call("POST", f"/api/drafts/{record['id']}/approve")
    assert (status, body["error"]) == (403, "role")
    # one person with both roles cannot approve what they wrote either
    both = await _client(live, http, "both")
    status, mine = await both.call("POST", "/api/drafts", draft())
    await both.call("POST", f"/api/drafts/{mine['id']}/submit")
    status, body = await both.call("POST", f"/api/drafts/{mine['id']}/approve")
    assert (status, body["error"]) == (403, "second_person")
    status, body = await both.call("GET", f"/api/drafts/{mine['id']}")
    assert body["state"] == "awaiting_approval" and "alert_id" not in body


async def test_an_exercise_needs_no_second_person_by_default(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    status, record = await author.call("POST", "/api/drafts", draft(status="Exercise"))
    assert status == 201
    status, sent = await author.call("POST", f"/api/drafts/{record['id']}/submit")
    assert status == 200 and sent["state"] == "sent", sent
    assert sent["decision"]["outcome"] == "accepted"


async def test_two_approvers_at_once_send_a_draft_once(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    first, second = await _client(live, http, "approver"), await _client(live, http, "both")
    _, record = await author.call("POST", "/api/drafts", draft())
    await author.call("POST", f"/api/drafts/{record['id']}/submit")
    path = f"/api/drafts/{record['id']}/approve"
    answers = await asyncio.gather(first.call("POST", path), second.call("POST", path))
    assert sorted(status for status, _ in answers) == [200, 409], answers
    sent = next(body for status, body in answers if status == 200)
    assert sent["decision"]["outcome"] == "accepted"


# --- the whole path ------------------------------------------------------------------------------


async def _follow_until_done(client: Client, alert_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    async with asyncio.timeout(120):
        while True:
            status, body = await client.call("GET", f"/api/alerts/{alert_id}/follow")
            assert status == 200, body
            if body["done"] and body["tasks"] > 0:
                return body
            await asyncio.sleep(1)


async def test_two_people_send_a_ward_alert_that_is_delivered_and_then_cancel_it(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    approver = await _client(live, http, "approver")
    status, checked = await author.call("POST", "/api/check", draft())
    assert status == 200 and checked["problems"] == [], checked
    status, record = await author.call("POST", "/api/drafts", draft())
    assert status == 201
    status, preview = await approver.call("POST", f"/api/drafts/{record['id']}/preview")
    assert status == 200, preview
    expected = len(live.loa.expected([WARD]))
    assert preview["reached"] == expected > 0
    assert preview["by_province"] == {"VN-51": expected}
    assert sum(preview["by_channel"].values()) == expected
    assert preview["msg_type"] == "Alert" and preview["version"] == 1
    assert preview["alert"]["identifier"] == f"console.{record['id']}"
    assert preview["alert"]["info"][1]["headline"] == "Flash flood warning"
    status, record = await author.call("POST", f"/api/drafts/{record['id']}/submit")
    assert record["state"] == "awaiting_approval"
    status, sent = await approver.call("POST", f"/api/drafts/{record['id']}/approve")
    assert status == 200, sent
    assert sent["state"] == "sent" and sent["approver"] == "approver"
    assert sent["decision"]["outcome"] == "accepted", sent["decision"]
    alert_id = sent["alert_id"]
    assert {**sent["cap"], "sent": ""} == {**preview["alert"], "sent": ""}  # what was shown
    assert sent["cap"]["sender"] == QUANG_NGAI and sent["cap"]["info"][0]["area"][0]["regions"] == [
        WARD
    ]
    code, _, err = await run_loa(
        live.loa.settings, "deliver", "--provider", "log", "--idle-exit", "5"
    )
    assert code == 0, err
    progress = await _follow_until_done(approver, alert_id)
    assert progress["delivered"] == progress["tasks"] == expected
    assert progress["by_province"]["VN-51"]["targeted"] == expected
    status, history = await author.call("GET", "/api/alerts")
    assert alert_id in [row["alert_id"] for row in history]
    # Update from the alert's page: prefilled, edited, the same approval; version 2
    status, update = await author.call("POST", f"/api/alerts/{alert_id}/update")
    assert status == 201 and update["msg_type"] == "Update" and len(update["references"]) == 1
    assert update["infos"] == sent["infos"] and update["areas"] == sent["areas"]
    changed = {
        k: update[k]
        for k in (
            "status",
            "event",
            "urgency",
            "severity",
            "certainty",
            "category",
            "expires",
            "areas",
        )
    }
    infos = [{**update["infos"][0], "headline": "Lũ quét: nước đang lên"}, update["infos"][1]]
    changed.update(msg_type="Update", infos=infos, references=["ignored,by,the-server"])
    status, edited = await author.call("PUT", f"/api/drafts/{update['id']}", changed)
    assert status == 200 and edited["references"] == update["references"], edited
    status, preview = await approver.call("POST", f"/api/drafts/{update['id']}/preview")
    assert (preview["msg_type"], preview["version"]) == ("Update", 2)
    await author.call("POST", f"/api/drafts/{update['id']}/submit")
    status, updated = await approver.call("POST", f"/api/drafts/{update['id']}/approve")
    assert updated["decision"]["outcome"] == "accepted", updated["decision"]
    assert (updated["alert_id"], updated["decision"]["version"]) == (alert_id, 2)
    status, shown = await author.call("GET", f"/api/alerts/{alert_id}")
    assert shown["id"] == update["id"] and shown["versions"] == [update["id"], record["id"]]
    # Cancel from the alert's page: prefilled, references set, the same approval
    status, cancel = await author.call("POST", f"/api/alerts/{alert_id}/cancel")
    assert status == 201 and cancel["msg_type"] == "Cancel" and len(cancel["references"]) == 2
    await author.call("POST", f"/api/drafts/{cancel['id']}/submit")
    status, cancelled = await approver.call("POST", f"/api/drafts/{cancel['id']}/approve")
    assert status == 200 and cancelled["decision"]["outcome"] == "accepted", cancelled
    assert cancelled["alert_id"] == alert_id


# --- isolation -----------------------------------------------------------------------------------


async def test_another_agency_gets_404_for_every_draft_and_alert(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    _, record = await author.call("POST", "/api/drafts", draft(status="Exercise"))
    _, sent = await author.call("POST", f"/api/drafts/{record['id']}/submit")
    assert sent["state"] == "sent"
    other = await _client(live, http, "ninh")
    d, a = record["id"], sent["alert_id"]
    for method, path in (
        ("GET", f"/api/drafts/{d}"),
        ("PUT", f"/api/drafts/{d}"),
        ("POST", f"/api/drafts/{d}/preview"),
        ("POST", f"/api/drafts/{d}/submit"),
        ("POST", f"/api/drafts/{d}/approve"),
        ("POST", f"/api/drafts/{d}/return"),
        ("GET", f"/api/alerts/{a}"),
        ("GET", f"/api/alerts/{a}/follow"),
        ("POST", f"/api/alerts/{a}/update"),
        ("POST", f"/api/alerts/{a}/cancel"),
    ):
        status, body = await other.call(method, path, draft() if method == "PUT" else {})
        assert (status, body["error"]) == (404, "not_found"), (method, path, body)
    _, history = await other.call("GET", "/api/alerts")
    assert a not in [row["alert_id"] for row in history]
    _, drafts = await other.call("GET", "/api/drafts")
    assert d not in [row["id"] for row in drafts]


# --- hostile input -------------------------------------------------------------------------------

HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("oversized event", {"event": "x" * 300}, "event"),
    ("control character", {"event": "Lũ\x00quét"}, "event"),
    ("bidi override", {"event": "Lũ \u202equét"}, "event"),
    (
        "script tag",
        {"infos": [{"language": "vi-VN", "headline": "<script>alert(1)</script>"}]},
        "infos[0].headline",
    ),
    (
        "xml entity",
        {"infos": [{"language": "vi-VN", "headline": "Lũ", "description": "&lt;b&gt;"}]},
        "infos[0].description",
    ),
    (
        "entity declaration",
        {
            "infos": [
                {
                    "language": "vi-VN",
                    "headline": "Lũ",
                    "instruction": '<!ENTITY x SYSTEM "file:///etc/passwd">',
                }
            ]
        },
        "infos[0].instruction",
    ),
    (
        "oversized headline",
        {"infos": [{"language": "vi-VN", "headline": "a" * 600}]},
        "infos[0].headline",
    ),
    ("unknown language", {"infos": [{"language": "xx", "headline": "Lũ"}]}, "infos[0].language"),
    ("bad status", {"status": "Draft"}, "status"),
    ("bad severity", {"severity": "Catastrophic"}, "severity"),
    ("bad category", {"category": ["Weather"]}, "category[0]"),
    ("bad region code", {"areas": {"regions": ["VN-51-2"]}}, "areas.regions[0]"),
    ("unknown ward", {"areas": {"regions": ["VN-51-99999"]}}, "areas.regions[0]"),
    ("ward of another province", {"areas": {"regions": ["VN-01-00004"]}}, "areas.regions[0]"),
    (
        "polygon abroad",
        {"areas": {"polygons": [[[48.85, 2.35], [48.86, 2.36], [48.84, 2.37]]]}},
        "areas.polygons[0]",
    ),
    (
        "polygon of one point",
        {"areas": {"polygons": [[[15.1, 108.8], [15.1, 108.8], [15.1, 108.8]]]}},
        "areas.polygons[0]",
    ),
    (
        "radius 0",
        {"areas": {"circles": [{"lat": 15.1, "lon": 108.8, "radius_km": 0}]}},
        "areas.circles[0].radius_km",
    ),
    (
        "negative radius",
        {"areas": {"circles": [{"lat": 15.1, "lon": 108.8, "radius_km": -3}]}},
        "areas.circles[0].radius_km",
    ),
    (
        "huge radius",
        {"areas": {"circles": [{"lat": 15.1, "lon": 108.8, "radius_km": 1e9}]}},
        "areas.circles[0].radius_km",
    ),
    ("no area", {"areas": {}}, "areas"),
    ("expiry in the past", {"expires": "2020-01-01T00:00:00+07:00"}, "expires"),
    ("expiry not a time", {"expires": "tomorrow"}, "expires"),
    ("severity above the agency's", {"severity": "Extreme"}, "severity"),
]


@pytest.mark.parametrize(
    ("change", "field"), [(c, f) for _, c, f in HOSTILE], ids=[name for name, _, _ in HOSTILE]
)
async def test_hostile_input_is_refused_at_its_field(
    live: LiveConsole, http: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    author = await _client(live, http, "author")
    status, body = await author.call("POST", "/api/drafts", draft(**change))
    assert status == 422, body
    assert field in [p["field"] for p in body["problems"]], body
    assert all(p["message"] for p in body["problems"])


# --- audit ---------------------------------------------------------------------------------------


def _audit(live: LiveConsole) -> list[dict[str, Any]]:
    """The audit topic, read by librdkafka (no Loa code)."""
    topic = live.console.settings.console_audit_topic
    consumer = Consumer(
        {
            "bootstrap.servers": live.loa.settings.bootstrap_servers,
            "group.id": "audit-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        events = []
        while len(events) < high - low:
            message = consumer.poll(5)
            assert message is not None and message.error() is None
            events.append(json.loads(message.value()))
        return events
    finally:
        consumer.close()


async def test_every_action_is_in_the_audit_topic(
    live: LiveConsole, http: aiohttp.ClientSession
) -> None:
    author = await _client(live, http, "author")
    approver = await _client(live, http, "approver")
    await Client(http, live.url).login("author", "wrong password here")
    _, record = await author.call("POST", "/api/drafts", draft())
    await author.call("PUT", f"/api/drafts/{record['id']}", draft(event="Lũ quét lớn"))
    await approver.call("POST", f"/api/drafts/{record['id']}/preview")
    await author.call("POST", f"/api/drafts/{record['id']}/submit")
    await author.call("POST", f"/api/drafts/{record['id']}/approve")  # refused: not an approver
    await approver.call("POST", f"/api/drafts/{record['id']}/return", {"reason": "Thêm hướng dẫn"})
    await author.call("POST", f"/api/drafts/{record['id']}/submit")
    _, sent = await approver.call("POST", f"/api/drafts/{record['id']}/approve")
    await author.call("POST", f"/api/alerts/{sent['alert_id']}/update")
    await author.call("POST", "/api/logout")
    events = await asyncio.to_thread(_audit, live)
    mine = [
        (e["user"], e["action"], e["outcome"])
        for e in events
        if e["draft_id"] == record["id"] or e["alert_id"] == sent["alert_id"]
    ]
    assert mine[:9] == [
        ("author", "draft_create", "ok"),
        ("author", "draft_update", "ok"),
        ("approver", "preview", "ok"),
        ("author", "submit", "awaiting_approval"),
        ("author", "approve", "refused"),
        ("approver", "return", "ok"),
        ("author", "submit", "awaiting_approval"),
        ("approver", "approve", "ok"),
        ("approver", "send", "accepted"),
    ]
    assert ("author", "update", "draft") in mine
    assert any(
        e["action"] == "login" and e["outcome"] == "failed" and e["user"] == "author"
        for e in events
    )
    assert any(e["action"] == "logout" and e["user"] == "author" for e in events)
    for e in events:
        if e["user"] in ("author", "approver") and e["outcome"] not in ("failed", "rate_limited"):
            assert e["agency"] == QUANG_NGAI, e
    code, out, _ = await run_loa(live.loa.settings, "audit", "--agency", QUANG_NGAI, "--json")
    assert code == 0 and len(json.loads(out)["events"]) >= 8
    code, out, _ = await run_loa(live.loa.settings, "audit", "--since", "2099-01-01T00:00:00Z")
    assert code == 0 and out == ""
    code, out, _ = await run_loa(live.loa.settings, "audit", "--agency", QUANG_NGAI)
    assert code == 0 and f"author draft_create ok draft={record['id']}" in out


# --- the command line ----------------------------------------------------------------------------


async def test_loa_console_refuses_plain_http_off_loopback_and_a_policy_for_nobody(
    live: LiveConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOA_CONSOLE_HOST", "0.0.0.0")
    code, _, err = await run_loa(live.loa.settings, "console")
    assert code == 2 and "not loopback" in err
    monkeypatch.delenv("LOA_CONSOLE_HOST")
    monkeypatch.setenv("LOA_CONSOLE_PORT", "0")
    monkeypatch.setenv("LOA_CONSOLE_APPROVAL", "ghost.gov.vn:Actual/Minor=none")
    code, _, err = await run_loa(live.loa.settings, "console")
    assert code == 78 and "ghost.gov.vn" in err
    monkeypatch.setenv("LOA_CONSOLE_APPROVAL", "*:Actual=maybe")
    code, _, err = await run_loa(live.loa.settings, "console")
    assert code == 2 and "LOA_CONSOLE_APPROVAL" in err


async def test_a_disabled_user_is_logged_out_and_cannot_log_in(
    live: LiveConsole, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    password = tmp_path / "pw"
    password.write_text("another long password\n")
    settings = live.loa.settings
    code, _, err = await run_loa(
        settings,
        "console",
        "users",
        "add",
        "--agency",
        "nowhere.gov.vn",
        "--user",
        "temp",
        "--role",
        "viewer",
        "--password-file",
        str(password),
    )
    assert code == 2 and "not in the agency registry" in err
    code, _, err = await run_loa(
        settings,
        "console",
        "users",
        "add",
        "--agency",
        QUANG_NGAI,
        "--user",
        "temp",
        "--role",
        "viewer",
        "--password-file",
        str(password),
    )
    assert code == 0, err
    client = Client(http, live.url)
    assert (await client.login("temp", "another long password")).status == 200
    code, out, _ = await run_loa(settings, "console", "users", "list", "--json")
    listed = {u["user"]: u for u in json.loads(out)["users"]}
    assert listed["temp"]["roles"] == ["viewer"] and "hash" not in listed["temp"]
    assert (await run_loa(settings, "console", "users", "disable", "temp"))[0] == 0
    await live.console.users.ready(timeout_s=10)
    assert (await client.call("GET", "/api/me"))[0] == 401
    assert (await client.login("temp", "another long password")).status == 401


# --- HTTPS ---------------------------------------------------------------------------------------


async def test_over_https_the_console_sends_hsts_and_a_secure_cookie(
    live: LiveConsole, tmp_path: Path
) -> None:
    files = tls_files(tmp_path)
    settings = replace(
        live.console.settings,
        console_host="0.0.0.0",  # off loopback: allowed with TLS only
        gateway_tls_cert=str(files["server_cert"]),
        gateway_tls_key=str(files["server_key"]),
    )
    console = Console(settings)
    port = await console.start(port=0)
    trusted = ssl.create_default_context(cafile=str(files["ca"]))
    try:
        async with aiohttp.ClientSession() as http:
            body = {"username": "viewer", "password": PASSWORD}
            async with http.post(
                f"https://127.0.0.1:{port}/api/login", json=body, ssl=trusted
            ) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
                assert "Secure" in r.headers["Set-Cookie"]
    finally:
        await console.stop()
