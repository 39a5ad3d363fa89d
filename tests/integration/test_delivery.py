"""The delivery worker on the real broker, calling a real local HTTP provider that answers 200,
429 with Retry-After, 500, slowly, by resetting the connection, or 400 (permanent). A task that
fails for good (400, or 500 until its attempts ran out) moves to the recipient's next channel.

Every task must end with exactly one final receipt, delivered or failed with a reason (after
a ``retrying`` receipt per failed attempt), and the provider must never see a second delivery
of a key the worker already settled."""

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
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.delivery import HttpChannel, deliver
from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.settings.model import Settings
from tests.integration.conftest import TEST_AGENCY, alert, live_loa, run_loa

pytestmark = pytest.mark.integration


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections; their
    # calls then reach the server a second late (a retransmit), out of the order they were made
    request_queue_size = 1024


class Provider:
    """A real HTTP server on loopback; for tasks of channel ``failing``, behaviour by
    ``recipient_id % 10`` of the posted task (other channels: 200)."""

    def __init__(self, *, slow_s: float = 2.0, delay_s: float = 0.0, failing: str = "sms") -> None:
        self.slow_s, self.delay_s, self.failing = slow_s, delay_s, failing
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
                kind = task["recipient_id"] % 10 if task["channel"] == provider.failing else 0
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

        self.server = _Server(("127.0.0.1", 0), Handler)
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


async def _write_with_content(
    settings: Settings, alert_id: str, infos: list[Any] | None, tasks: list[dict[str, Any]]
) -> None:
    """The accepted alert (its text, what the protocol channels send) and then the tasks, as
    ingest and the fan-out write them."""
    if infos is not None:
        producer = make_producer(settings)
        await producer.start()
        try:
            accepted = {"alert_id": alert_id, "version": 1, "infos": infos}
            await producer.send_and_wait(
                settings.accepted_topic, orjson.dumps(accepted), key=alert_id.encode()
            )
        finally:
            await producer.stop()
    await _write(settings, tasks)


async def _receipts(settings: Settings, *, retrying: bool = False) -> list[dict[str, Any]]:
    """Final receipts (delivered, failed); with ``retrying``, the retrying ones too."""
    docs = [orjson.loads(r.value) async for r in read_to_end(settings, settings.receipts_topic)]
    return [d for d in docs if retrying or d["outcome"] != "retrying"]


#: Short back-off for tests: retries come within fractions of a second.
FAST_RETRIES = {"delivery_backoff_base_s": 0.1, "delivery_backoff_cap_s": 0.5}


@pytest.fixture
def settings(make_settings: Any) -> Iterator[Settings]:
    yield make_settings(**FAST_RETRIES)


#: max_attempts of the test below
ATTEMPTS = 5


async def test_every_task_ends_delivered_or_failed_with_a_reason_and_none_twice(
    make_settings: Any,
) -> None:
    # a circuit that never opens: this test counts each key's calls
    settings = make_settings(**FAST_RETRIES, delivery_breaker_failures=10_000)
    await create_topics(settings)
    tasks = [_task(r, "routine", fallback=["push"]) for r in range(200)]
    await _write(settings, tasks)
    metrics = DeliveryMetrics()
    # headroom for a loaded machine: a call that times out before the provider reads it is an
    # attempt too, and the scripted one-shot failures (429, slow, reset) must still be followed
    # by a call the provider answers with 200
    with Provider(slow_s=4.0) as provider:
        channel = HttpChannel(provider.url, timeout_s=2.0)
        try:
            stats = await deliver(
                settings,
                provider=channel,
                idle_exit_s=3.0,
                max_attempts=ATTEMPTS,
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
    assert provider.calls["test.agency.vn/D1:1:6"] == ATTEMPTS  # max_attempts
    assert provider.calls["test.agency.vn/D1:1:9"] == 1  # permanent: never retried
    assert stats.fallbacks == 40 and stats.failed == 40 and stats.delivered == 200
    assert metrics.retries.labels("sms", "rate_limited")._value.get() == 20
    assert metrics.failures.labels("sms", "http_500")._value.get() == 20
    # each failed attempt left a retrying receipt naming the attempt, and a retry copy
    retrying = [r for r in await _receipts(settings, retrying=True) if r["outcome"] == "retrying"]
    assert len(retrying) == stats.retries
    assert Counter(r["attempt"] for r in retrying if r["recipient_id"] == 6) == {
        n: 1 for n in range(1, ATTEMPTS)
    }
    scheduled = sum(
        metrics.retries_scheduled.labels("sms", tier)._value.get() for tier in ("1s", "10s")
    )
    assert scheduled == stats.retries


async def test_extreme_tasks_are_delivered_before_a_routine_backlog(settings: Settings) -> None:
    await create_topics(settings)
    routine = [_task(r * 10, "routine") for r in range(1, 601)]
    extreme = [_task(r * 10, "extreme") for r in range(2001, 2021)]
    await _write(settings, routine)
    await _write(settings, extreme)
    with Provider() as provider:
        channel = HttpChannel(provider.url, timeout_s=5.0)
        try:
            await deliver(settings, provider=channel, idle_exit_s=3.0, concurrency=8)
        finally:
            await channel.close()
    order = [priority for priority, _ in provider.arrivals]
    assert order.count("extreme") == 20 and order.count("routine") == 600
    # at most the calls started before the extreme tasks were fetched go first
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
            # passed-over tasks are counted as fetched: a rebalance on the shared broker may
            # hand some to this worker twice (the receipts below stay exact)
            assert stats.delivered == 20 and stats.skipped >= 20
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
        assert "Traceback" not in err.decode() and "CancelledError" not in err.decode()
        assert "HTTP Request:" not in err.decode()  # httpx's INFO line per call is silenced
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


#: Recipients of the fallback test: ``recipient_id % 10`` picks the ``oa`` provider's answer
#: (0-4 deliver, 6 is a 500 until the attempts run out, 9 a permanent 400); ``// 10 % 4`` the
#: preference, as a subscriber would give it (a single channel is still a valid row).
_PREFERENCES = ("oa|sms", "oa|sms|push", "oa", "sms|oa")
_FALLBACK_IDS = [r for r in range(7_000, 7_400) if r % 10 in (0, 1, 2, 3, 4, 6, 9)]


async def test_a_recipient_whose_channel_fails_for_good_gets_one_task_on_their_next_channel(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `loa deliver` below: a circuit that stays closed (a tenth of the calls answer 500 three
    # times; an open circuit would delay the others past the extreme fallback budget, and
    # they would fall back too, rightly, but this test counts fallbacks by answer)
    monkeypatch.setenv("LOA_DELIVERY_BREAKER_FAILURES", "100000")
    monkeypatch.setenv("LOA_DELIVERY_BACKOFF_BASE_S", "0.2")
    async with live_loa(kafka_bootstrap, tmp_path_factory, subscribers=0) as live:
        settings = live.settings
        ward = next(c for c in live.regions.ward_codes if c.startswith("VN-22-"))
        prefs = {r: _PREFERENCES[r // 10 % 4].split("|") for r in _FALLBACK_IDS}
        rows = [f"{r},{ward},{'|'.join(prefs[r])},vi" for r in _FALLBACK_IDS]
        directory = tmp_path / "subscribers.csv"
        directory.write_text("recipient_id,ward,channels,language\n" + "\n".join(rows) + "\n")
        code, out, err = await run_loa(settings, "directory", "load", str(directory))
        assert code == 0, out + err
        await live.publish(orjson.dumps(alert("FALLBACK-1", ["VN-22"])))
        kind, _ = await live.decision(TEST_AGENCY, "FALLBACK-1")
        assert kind == "accepted"
        alert_id = f"{TEST_AGENCY}/FALLBACK-1"
        await live.fanned_out(alert_id)
        with Provider(failing="oa") as provider:
            args = ("--provider", "http", "--url", provider.url, "--max-attempts", "3")
            code, out, err = await run_loa(settings, "deliver", *args, "--idle-exit", "3")
        assert code == 0, out + err

        # what a read_committed consumer sees: one task per recipient from the fan-out, plus
        # one fallback task on the next channel for each recipient whose channel failed for good
        _, tasks = await live.tasks(alert_id, "extreme")
        key = f"{alert_id}:1"
        moved = {r for r in _FALLBACK_IDS if prefs[r][0] == "oa" and r % 10 in (6, 9)}
        moved_on = {r for r in moved if len(prefs[r]) > 1}
        expected_tasks = Counter({f"{key}:{r}": 1 for r in _FALLBACK_IDS})
        expected_tasks.update({f"{key}:{r}/{prefs[r][1]}": 1 for r in moved_on})
        assert Counter(t["idempotency_key"] for t in tasks) == expected_tasks
        for task in tasks:
            chain = prefs[task["recipient_id"]]
            if "fallback_of" in task:
                assert (task["channel"], task["fallback_of"], task["fallback"]) == (
                    chain[1],
                    chain[0],
                    chain[2:],
                )
                assert task["lineage_key"] == f"{key}:{task['recipient_id']}"
            else:
                assert [task["channel"], *task["fallback"]] == chain

        # one receipt per task, nobody delivered twice, each moved recipient delivered on sms
        receipts = [r for r in await _receipts(settings) if r["alert_id"] == alert_id]
        assert Counter(r["idempotency_key"] for r in receipts) == expected_tasks
        assert all(n == 1 for n in provider.delivered.values())
        delivered = Counter(r["recipient_id"] for r in receipts if r["outcome"] == "delivered")
        assert delivered == Counter({r: 1 for r in _FALLBACK_IDS if r not in moved - moved_on})
        for r in receipts:
            if r["outcome"] == "failed":
                reason = "http_500" if r["recipient_id"] % 10 == 6 else "http_400"
                nxt = prefs[r["recipient_id"]][1:2]
                assert (r["channel"], r["reason"], r.get("fallback")) == (
                    "oa",
                    reason,
                    nxt[0] if nxt else None,
                )

        # loa status: fallbacks by route and reason, final failures apart, done
        code, out, err = await run_loa(settings, "status", alert_id, "--watch", "--timeout", "60")
        assert code == 0, out + err
        code, out, err = await run_loa(settings, "status", alert_id, "--json")
        assert code == 0, err
        status = orjson.loads(out)["status"]
        routes = Counter(f"oa>sms http_{500 if r % 10 == 6 else 400}" for r in moved_on)
        assert (status["emitted"], status["delivered"], status["failed"]) == (
            len(_FALLBACK_IDS),
            len(_FALLBACK_IDS) - len(moved - moved_on),
            len(moved - moved_on),
        )
        assert (status["fallbacks"], status["fallback_routes"]) == (len(moved_on), routes)
        assert status["done"] and status["pending"] == 0
        code, out, err = await run_loa(settings, "status", alert_id)
        assert code == 0, err
        assert f"fell back   {len(moved_on):>12,}  (oa>sms http_400 " in out


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8080/send", "http://"])
async def test_a_provider_url_that_is_not_http_is_refused_with_exit_2(
    settings: Settings, url: str
) -> None:
    code, out, err = await run_loa(settings, "deliver", "--provider", "http", "--url", url)
    assert code == 2, out + err
    assert "http:// or https://" in err or "not a URL" in err


async def test_an_unreadable_bearer_token_file_is_refused_with_exit_2(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOA_DELIVERY_HTTP_BEARER_TOKEN_FILE", str(tmp_path / "missing"))
    args = ("--provider", "http", "--url", "https://provider.example/send")
    code, out, err = await run_loa(settings, "deliver", *args)
    assert code == 2, out + err
    assert "LOA_DELIVERY_HTTP_BEARER_TOKEN_FILE" in err
