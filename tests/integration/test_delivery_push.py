"""The push channel on the real broker against a local server that answers as FCM HTTP v1
documents (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode): the request's
path, bearer token, message shape and 4096-byte payload limit are checked, and each device
token's answer is chosen by ``recipient_id % 10``: 0-4 200; 5 429 QUOTA_EXCEEDED with
Retry-After, then 200; 6 503 UNAVAILABLE, then 200; 7 500 INTERNAL, then 200; 8 404
UNREGISTERED; 9 400 INVALID_ARGUMENT. Counted at the server and with a read_committed reader."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.delivery import deliver
from streams.delivery.content import AlertContent
from streams.delivery.push import MAX_PAYLOAD, PushChannel
from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics
from streams.settings.model import Settings
from tests.integration.conftest import run_loa
from tests.integration.test_delivery import _write_with_content
from tests.integration.test_delivery_retries import FAST, Receipts

pytestmark = pytest.mark.integration

GOOD_TOKEN = "ya29.good-token"
LONG = "Người dân ven biển sơ tán ngay đến nơi trú ẩn gần nhất. " * 120  # ~7 KB of UTF-8


def _fcm_error(http: int, status: str, code: str) -> web.Response:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    body = {"error": {"code": http, "message": code, "status": status, "details": details}}
    return web.json_response(body, status=http)


class FcmServer:
    """An FCM-v1-shaped server on loopback (see the module docstring)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # requests per device token
        self.delivered: Counter[str] = Counter()  # 200s per device token
        self.payload_sizes: list[int] = []
        self.bodies: dict[str, dict[str, Any]] = {}
        app = web.Application()
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        self.runner = web.AppRunner(app, access_log=None)
        self.base = ""

    async def __aenter__(self) -> FcmServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def send(self, request: web.Request) -> web.Response:
        if request.match_info["project"] != "loa-test":
            return _fcm_error(404, "NOT_FOUND", "UNSPECIFIED_ERROR")
        if request.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            return _fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
        message = (await request.json())["message"]
        size = len(orjson.dumps(message["notification"])) + len(orjson.dumps(message["data"]))
        self.payload_sizes.append(size)
        if size > MAX_PAYLOAD:
            return _fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        token = message["token"]
        self.calls[token] += 1
        self.bodies[token] = message
        kind, first = int(token.removeprefix("dev-")) % 10, self.calls[token] == 1
        if kind == 5 and first:
            response = _fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
            response.headers["Retry-After"] = "1"
            return response
        if kind == 6 and first:
            return _fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")
        if kind == 7 and first:
            return _fcm_error(500, "INTERNAL", "INTERNAL")
        if kind == 8:
            return _fcm_error(404, "NOT_FOUND", "UNREGISTERED")
        if kind == 9:
            return _fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        self.delivered[token] += 1
        return web.json_response({"name": f"projects/loa-test/messages/{token}"})


def _task(recipient: int, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": "test.agency.vn/P1",
        "version": 1,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": recipient,
        "channel": "push",
        "fallback": [],
        "language": "vi",
        "idempotency_key": f"test.agency.vn/P1:1:{recipient}",
        **extra,
    }


async def _publish(settings: Settings, tasks: list[dict[str, Any]]) -> None:
    infos = [{"language": "vi", "event": "Bão", "headline": "Bão số 3", "instruction": LONG}]
    await _write_with_content(settings, "test.agency.vn/P1", infos, tasks)


@asynccontextmanager
async def _worker(settings: Settings, server: FcmServer, token_file: Path) -> AsyncIterator[None]:
    channel = PushChannel(
        server.base,
        "loa-test",
        str(token_file),
        AlertContent(settings).message,
        device_token_template="dev-{recipient_id}",
        timeout_s=5,
    )
    stop = asyncio.Event()
    run = asyncio.create_task(
        deliver(settings, provider=channel, channel="push", metrics=DeliveryMetrics(), stop=stop)
    )
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(run, 60)
        finally:
            await channel.close()


async def test_push_tasks_reach_the_fcm_shaped_server_with_each_documented_error_mapped(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    token_file = tmp_path / "token"
    token_file.write_text(GOOD_TOKEN + "\n")
    expires = int(time.time()) + 600
    tasks = [_task(r, expires=expires) for r in range(100)]
    await _publish(settings, tasks)
    async with (
        FcmServer() as server,
        Receipts(settings) as receipts,
        _worker(settings, server, token_file),
    ):
        await receipts.until(lambda: len(receipts.final()) >= 100, 120, "all 100 settled")
    final = {d["recipient_id"]: d for d in receipts.final()}
    assert len(receipts.final()) == 100
    for r, doc in final.items():
        expected = {8: ("failed", "push_unregistered"), 9: ("failed", "push_invalid_argument")}
        assert (doc["outcome"], doc.get("reason")) == expected.get(r % 10, ("delivered", None))
    retried = Counter(d["reason"] for d in receipts.retrying())
    assert retried["rate_limited"] == 10  # 429 QUOTA_EXCEEDED, honouring Retry-After
    assert retried["push_unavailable"] == 10 and retried["push_internal"] == 10
    # each delivered device got exactly one accepted message
    assert server.delivered == Counter({f"dev-{r}": 1 for r in range(100) if r % 10 < 8})
    assert max(server.payload_sizes) <= MAX_PAYLOAD  # the 7 KB instruction was cut to fit
    message = server.bodies["dev-3"]
    assert message["notification"]["title"] == "Bão số 3"
    assert message["notification"]["body"].endswith("…")
    assert message["android"]["priority"] == "high"
    assert 590 <= int(message["android"]["ttl"].removesuffix("s")) <= 600
    assert message["data"]["idempotency_key"] == "test.agency.vn/P1:1:3"


async def test_a_refused_credential_retries_until_the_token_file_is_fixed(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    token_file = tmp_path / "token"
    token_file.write_text("ya29.expired\n")
    tasks = [_task(r * 10, expires=int(time.time()) + 600) for r in range(20)]  # all answer 200
    await _publish(settings, tasks)
    async with (
        FcmServer() as server,
        Receipts(settings) as receipts,
        _worker(settings, server, token_file),
    ):
        await receipts.until(
            lambda: len({d["recipient_id"] for d in receipts.retrying()}) == 20,
            60,
            "every task refused and retrying",
        )
        # 401s, then the circuit they opened refuses calls until a probe succeeds
        assert "push_credential_401" in {d["reason"] for d in receipts.retrying()}
        assert receipts.final() == []  # a wrong credential fails nobody for good
        token_file.write_text(GOOD_TOKEN + "\n")  # an outside refresher rotates it
        await receipts.until(lambda: len(receipts.final()) >= 20, 120, "all delivered")
    assert Counter(d["outcome"] for d in receipts.final()) == Counter({"delivered": 20})
    assert sum(server.delivered.values()) == 20


async def test_loa_deliver_provider_push_sends_each_push_task_to_its_device(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    await create_topics(settings)
    tasks = [_task(r * 10) for r in range(30)]  # all answer 200
    tasks += [_task(r, channel="sms") for r in range(1001, 1011)]  # not for a push worker
    await _publish(settings, tasks)
    token_file = tmp_path / "token"
    token_file.write_text(GOOD_TOKEN + "\n")
    monkeypatch.setenv("LOA_DELIVERY_PUSH_PROJECT", "loa-test")
    monkeypatch.setenv("LOA_DELIVERY_PUSH_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("LOA_DELIVERY_PUSH_DEVICE_TOKEN_TEMPLATE", "dev-{recipient_id}")
    async with FcmServer() as server:
        args = ("--provider", "push", "--url", server.base, "--max-tasks", "30")
        code, out, err = await run_loa(settings, "deliver", *args, "--idle-exit", "20")
    assert code == 0, out + err
    assert "delivered 30" in out
    assert server.delivered == Counter({f"dev-{r * 10}": 1 for r in range(30)})
