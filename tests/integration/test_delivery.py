"""The delivery worker on the real broker, calling a real local HTTP provider that answers 200,
429 with Retry-After, 500, slowly, by resetting the connection, or 400 (permanent). A task that
fails for good (400, or 500 until its attempts ran out) moves to the recipient's next channel.

Every task must end with exactly one receipt, delivered or failed with a reason, and the
provider must never see a second delivery of a key the worker already settled."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from streams.delivery import HttpChannel, deliver
from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.settings import Settings

pytestmark = pytest.mark.integration


class Provider:
    """A real HTTP server on loopback; behaviour by ``recipient_id % 10`` of the posted task."""

    def __init__(self, *, slow_s: float = 2.0, delay_s: float = 0.0) -> None:
        self.slow_s, self.delay_s = slow_s, delay_s
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # requests per idempotency key
        self.delivered: Counter[str] = Counter()  # 200s that delivered (first time per key)
        self.arrivals: list[tuple[str, str]] = []  # (priority, key) of each first request
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real provider

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                task = orjson.loads(body)
                key = self.headers["Idempotency-Key"]
                assert key == task["idempotency_key"]
                with provider.lock:
                    provider.calls[key] += 1
                    attempt = provider.calls[key]
                    if attempt == 1:
                        provider.arrivals.append((task["priority"], key))
                if provider.delay_s:
                    time.sleep(provider.delay_s)
                kind = task["recipient_id"] % 10 if task["channel"] == "sms" else 0
                if kind == 5 and attempt == 1:
                    return self._answer(429, {"Retry-After": "1"})
                if kind == 6:
                    return self._answer(500)
                if kind == 7 and attempt == 1:
                    time.sleep(provider.slow_s)  # the client times out first
                if kind == 8 and attempt == 1:
                    # a connection reset: RST instead of a response
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return None
                if kind == 9:
                    return self._answer(400)
                with provider.lock:
                    provider.delivered[key] += 1 if provider.delivered[key] == 0 else 0
                return self._answer(200)

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"

    def __enter__(self) -> Provider:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _task(recipient: int, priority: str, *, channel: str = "sms", **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": "test.agency.vn/D1",
        "version": 1,
        "kind": "alert",
        "priority": priority,
        "recipient_id": recipient,
        "channel": channel,
        "language": "vi",
        "idempotency_key": f"test.agency.vn/D1:1:{recipient}",
        **extra,
    }


async def _write(settings: Settings, tasks: list[dict[str, Any]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.sends_topic(t["priority"]),
                orjson.dumps(t),
                key=b"%d" % t["recipient_id"],
                partition=t["recipient_id"] % settings.partitions,
            )
            for t in tasks
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _receipts(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) async for r in read_to_end(settings, settings.receipts_topic)]


@pytest.fixture
def settings(make_settings: Any) -> Iterator[Settings]:
    yield make_settings()


async def test_every_task_ends_delivered_or_failed_with_a_reason_and_none_twice(
    settings: Settings,
) -> None:
    await create_topics(settings)
    tasks = [_task(r, "routine", fallback=["push"]) for r in range(200)]
    await _write(settings, tasks)
    metrics = DeliveryMetrics()
    with Provider(slow_s=2.0) as provider:
        channel = HttpChannel(provider.url, timeout_s=1.0)
        try:
            stats = await deliver(
                settings,
                provider=channel,
                idle_exit_s=3.0,
                max_attempts=3,
                concurrency=16,
                metrics=metrics,
            )
        finally:
            await channel.close()
    receipts = await _receipts(settings)
    per_key = Counter(r["idempotency_key"] for r in receipts)
    assert set(per_key.values()) == {1}  # none twice
    by_recipient: dict[int, list[dict[str, Any]]] = {}
    for r in receipts:
        by_recipient.setdefault(r["recipient_id"], []).append(r)
    assert set(by_recipient) == set(range(200))  # every task settled
    for recipient, docs in by_recipient.items():
        kind = recipient % 10
        if kind in (6, 9):  # 500 until the attempts ran out, or 400 (permanent): the
            # recipient's next channel got one task in the same lineage, and it was delivered
            reason = "http_500" if kind == 6 else "http_400"
            assert sorted(
                (d["channel"], d["outcome"], d["reason"], d.get("fallback"), d["idempotency_key"])
                for d in docs
            ) == [
                ("push", "delivered", None, None, f"test.agency.vn/D1:1:{recipient}/push"),
                ("sms", "failed", reason, "push", f"test.agency.vn/D1:1:{recipient}"),
            ]
        else:  # 200, 429 then 200, slow then 200, reset then 200
            assert [(d["outcome"], d["reason"]) for d in docs] == [("delivered", None)]
    # the provider delivered each key once; retries repeated only undelivered calls
    assert all(n == 1 for n in provider.delivered.values())
    assert provider.calls["test.agency.vn/D1:1:6"] == 3  # max_attempts
    assert provider.calls["test.agency.vn/D1:1:9"] == 1  # permanent: never retried
    assert stats.fallbacks == 40 and stats.failed == 40 and stats.delivered == 200
    assert metrics.retries.labels("sms", "rate_limited")._value.get() == 20
    assert metrics.failures.labels("sms", "http_500")._value.get() == 20


async def test_extreme_tasks_are_delivered_before_a_routine_backlog(settings: Settings) -> None:
    await create_topics(settings)
    routine = [_task(r * 10, "routine") for r in range(1, 601)]
    extreme = [_task(r * 10, "extreme") for r in range(2001, 2021)]
    await _write(settings, routine)
    await _write(settings, extreme)
    with Provider() as provider:
        channel = HttpChannel(provider.url, timeout_s=5.0)
        try:
            await deliver(settings, provider=channel, idle_exit_s=3.0, concurrency=8, batch_size=32)
        finally:
            await channel.close()
    order = [priority for priority, _ in provider.arrivals]
    assert order.count("extreme") == 20 and order.count("routine") == 600
    # at most the batches fetched before the extreme tasks were seen go first
    assert max(i for i, p in enumerate(order) if p == "extreme") < 4 * 32 + 20


async def test_channel_filter_delivers_only_its_channel_in_its_own_group(
    settings: Settings,
) -> None:
    await create_topics(settings)
    tasks = [_task(r * 10, "severe", channel=("sms", "push")[r % 2]) for r in range(40)]
    await _write(settings, tasks)
    with Provider() as provider:
        for channel_name in ("push", "sms"):
            channel = HttpChannel(provider.url, timeout_s=5.0)
            try:
                stats = await deliver(
                    settings, provider=channel, channel=channel_name, idle_exit_s=2.0
                )
            finally:
                await channel.close()
            assert (stats.delivered, stats.skipped) == (20, 20)
    receipts = await _receipts(settings)
    assert Counter(r["channel"] for r in receipts) == {"push": 20, "sms": 20}


async def test_sigterm_drains_sends_in_flight_then_stops(settings: Settings) -> None:
    await create_topics(settings)
    tasks = [_task(r * 10, "extreme") for r in range(300)]
    await _write(settings, tasks)
    env = {
        **os.environ,
        "LOA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOA_APP_ID": settings.app_id,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_PARTITIONS": str(settings.partitions),
    }
    args = ("deliver", "--provider", "http", "--concurrency", "8", "--idle-exit", "3")
    with Provider(delay_s=0.2) as provider:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streams",
            *args,
            "--url",
            provider.url,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                while len(provider.calls) < 20:  # noqa: ASYNC110 (the server runs in a thread)
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()[-2000:]
        first_run = len(await _receipts(settings))
        assert 20 <= first_run < 300  # it stopped early, after committing what it had sent
        # every call it made was committed: a second run never repeats one of them
        channel = HttpChannel(provider.url, timeout_s=5.0)
        try:
            await deliver(settings, provider=channel, idle_exit_s=3.0)
        finally:
            await channel.close()
    receipts = await _receipts(settings)
    assert Counter(r["idempotency_key"] for r in receipts) == Counter(
        t["idempotency_key"] for t in tasks
    )
    assert set(provider.calls.values()) == {1}
