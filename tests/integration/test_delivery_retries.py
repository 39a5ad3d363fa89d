"""Durable retries, circuits and no head-of-line blocking, on the real broker against a real
local HTTP provider that goes down, hangs and counts calls per idempotency key.

What happened is counted from outside Loa: the provider's own log of calls (per
``Idempotency-Key``, which must equal the body's key) and a read_committed receipts reader
written here with aiokafka, not Loa's readers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.delivery import HttpChannel, deliver
from streams.delivery.channels import http_options
from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics
from streams.settings.model import Settings
from tests.integration.test_delivery import _write

pytestmark = pytest.mark.integration

#: Back-off of these tests: retries within a second or two, circuits that probe quickly.
FAST = {
    "delivery_backoff_base_s": 0.2,
    "delivery_backoff_cap_s": 1.5,
    "delivery_breaker_failures": 5,
    "delivery_breaker_cooldown_s": 0.5,
}


def free_port() -> int:
    """A loopback port nothing listens on (connection refused until a provider binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of new connections is not dropped (default backlog 5)


class CountingProvider:
    """An HTTP provider on a fixed loopback port: 200 for every call, except that calls for
    ``hang`` keys block until :attr:`release` is set and calls for ``refuse`` keys get 503.
    It can be stopped (nothing listens: connection refused) and started again."""

    def __init__(self, port: int, *, delay_s: float = 0.0) -> None:
        self.port, self.delay_s = port, delay_s
        self.url = f"http://127.0.0.1:{port}/send"
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # every request, per idempotency key
        self.delivered: Counter[str] = Counter()  # 200 answers per key
        self.hang: set[str] = set()
        self.refuse: set[str] = set()
        self.reject: set[str] = set()  # bulk: answered 400 (a permanent refusal)
        self.bulk_sizes: list[int] = []  # messages per bulk request
        self.release = threading.Event()
        self.hanging = 0  # calls blocked right now
        self.connections: set[socket.socket] = set()
        self.authorization: set[str] = set()  # Authorization headers seen
        self.arrivals: list[float] = []  # when each call came in (the provider's clock)
        self._server: _Server | None = None

    def start(self, tls: ssl.SSLContext | None = None) -> CountingProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with provider.lock:
                    provider.connections.add(self.connection)

            def finish(self) -> None:
                with provider.lock:
                    provider.connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_POST(self) -> None:
                if self.path.endswith("/bulk"):
                    return self._bulk()
                task = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                assert key == task["idempotency_key"]  # the header names this very task
                with provider.lock:
                    provider.calls[key] += 1
                    provider.arrivals.append(time.monotonic())
                    provider.authorization.add(self.headers.get("Authorization", ""))
                if key in provider.hang and not provider.release.is_set():
                    with provider.lock:
                        provider.hanging += 1
                    provider.release.wait(60)
                    with provider.lock:
                        provider.hanging -= 1
                if provider.delay_s:
                    time.sleep(provider.delay_s)
                if key in provider.refuse:
                    return self._answer(503)
                with provider.lock:
                    provider.delivered[key] += 1
                return self._answer(200)

            def _bulk(self) -> None:
                """The bulk contract (docs/channels.md): a status per message, in order."""
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                keys = [m["idempotency_key"] for m in body["messages"]]
                statuses = []
                with provider.lock:
                    provider.bulk_sizes.append(len(keys))
                    for key in keys:
                        provider.calls[key] += 1
                        if key in provider.reject:
                            statuses.append(400)
                        elif key in provider.refuse:
                            statuses.append(503)
                        else:
                            provider.delivered[key] += 1
                            statuses.append(200)
                answer = orjson.dumps({"results": [{"status": s} for s in statuses]})
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = _Server(("127.0.0.1", self.port), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (kept-alive ones too)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Receipts:
    """Every committed receipt, read with a plain aiokafka read_committed consumer."""

    def __init__(self, settings: Settings) -> None:
        self.docs: list[dict[str, Any]] = []
        self._consumer = AIOKafkaConsumer(
            settings.receipts_topic,
            bootstrap_servers=settings.bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    async def __aenter__(self) -> Receipts:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=200)
        for records in batches.values():
            self.docs += [orjson.loads(r.value) for r in records if r.value]

    def final(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["outcome"] != "retrying"]

    def retrying(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["outcome"] == "retrying"]

    async def until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll until ``done()``; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout_s} s: {what}", pytrace=False)
            await self.poll()


def _task(recipient: int, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": "test.agency.vn/R1",
        "version": 1,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": recipient,
        "channel": "oa",
        "fallback": [],
        "language": "vi",
        "idempotency_key": f"test.agency.vn/R1:1:{recipient}",
        **extra,
    }


@asynccontextmanager
async def _worker(
    settings: Settings, url: str, metrics: DeliveryMetrics, **options: Any
) -> AsyncIterator[None]:
    """A delivery worker running in the background until the block ends (then it drains)."""
    stop = asyncio.Event()
    channel = HttpChannel(
        url, timeout_s=options.pop("timeout_s", 5.0), batch=options.pop("batch", 1)
    )
    run = asyncio.create_task(
        deliver(settings, provider=channel, metrics=metrics, stop=stop, **options)
    )
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(run, 60)
        finally:
            await channel.close()


async def test_provider_down_mid_extreme_alert_every_recipient_delivered_once_it_returns(
    make_settings: Any,
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    expires = int(time.time()) + 600
    before = [_task(r, expires=expires) for r in range(100)]
    during = [_task(r, expires=expires) for r in range(100, 300)]
    keys = {t["idempotency_key"] for t in before + during}
    provider = CountingProvider(free_port()).start()
    metrics = DeliveryMetrics()
    async with Receipts(settings) as receipts, _worker(settings, provider.url, metrics):
        await _write(settings, before)
        await receipts.until(lambda: len(receipts.final()) >= 100, 60, "first 100 delivered")
        provider.stop()  # the provider is gone: connection refused
        await _write(settings, during)
        # every task of the outage failed at least once and waits on a retry tier
        await receipts.until(
            lambda: len({d["recipient_id"] for d in receipts.retrying()}) >= 200,
            60,
            "a retrying receipt for every task written during the outage",
        )
        opened = metrics.circuit_opens.labels(provider.url.rsplit("/", 1)[0])
        assert opened._value.get() >= 1  # the outage opened the endpoint's circuit
        await asyncio.sleep(3)  # the outage goes on for a while
        provider.start()
        await receipts.until(lambda: len(receipts.final()) >= 300, 60, "all 300 settled")
    provider.stop()

    final = receipts.final()
    assert Counter(d["idempotency_key"] for d in final) == Counter(dict.fromkeys(keys, 1))
    assert {d["outcome"] for d in final} == {"delivered"}
    # the provider delivered every key exactly once; every call carried its key
    assert set(provider.delivered) == keys and set(provider.delivered.values()) == {1}
    # a retrying receipt per failed attempt, each with the time of the next one
    for doc in receipts.retrying():
        assert doc["reason"] in ("connection", "circuit_open", "timeout")
        assert doc["next_attempt_at"] >= doc["at"]
    # no request storm: the open circuit refused calls instead of making them
    refused = metrics.calls_refused.labels(provider.url.rsplit("/", 1)[0], "circuit_open")
    assert refused._value.get() > 0
    failed_calls = metrics.retries.labels("oa", "connection")._value.get()
    assert failed_calls < 2 * len(during)


async def test_bulk_calls_settle_each_message_on_its_own_status_and_survive_an_outage(
    make_settings: Any,
) -> None:
    """LOA_DELIVERY_HTTP_BATCH > 1: one POST carries up to ``batch`` tasks; a message the
    provider answers 503 is retried alone, one it refuses (400) falls back to the recipient's
    next channel at once, and an outage mid-run loses nobody."""
    settings = make_settings(**FAST)
    await create_topics(settings)
    expires = int(time.time()) + 600
    tasks = [_task(r, expires=expires, fallback=["sms"]) for r in range(400)]
    keys = [t["idempotency_key"] for t in tasks]
    provider = CountingProvider(free_port())
    provider.url = provider.url.replace("/send", "/bulk")
    provider.refuse.update(keys[10:20])  # transient: retried alone, then let through
    provider.reject.add(keys[30])  # permanent: falls back to sms
    provider.start()
    metrics = DeliveryMetrics()
    async with Receipts(settings) as receipts, _worker(settings, provider.url, metrics, batch=50):
        await _write(settings, tasks[:200])
        await receipts.until(
            lambda: len({d["idempotency_key"] for d in receipts.retrying()}) >= 10,
            60,
            "the ten 503 messages retrying",
        )
        provider.stop()
        await _write(settings, tasks[200:])
        await asyncio.sleep(2)  # every call fails meanwhile
        provider.refuse.clear()
        provider.start()
        await receipts.until(lambda: len(receipts.final()) >= 401, 90, "400 tasks + 1 fallback")

    provider.stop()
    final = receipts.final()
    by_key = Counter(d["idempotency_key"] for d in final)
    fallback_key = f"{keys[30]}/sms"
    assert by_key == Counter(dict.fromkeys([*keys, fallback_key], 1))
    rejected = next(d for d in final if d["idempotency_key"] == keys[30])
    assert (rejected["outcome"], rejected["reason"], rejected["fallback"]) == (
        "failed",
        "http_400",
        "sms",
    )
    assert {d["outcome"] for d in final if d["idempotency_key"] != keys[30]} == {"delivered"}
    # the provider took each message once (the refused ones too, once they were let through)
    assert set(provider.delivered) == (set(keys) - {keys[30]}) | {fallback_key}
    assert set(provider.delivered.values()) == {1}
    # calls did carry several tasks, never more than the batch
    assert max(provider.bulk_sizes) <= 50 and len(provider.bulk_sizes) < len(keys)
    # the 503s were retried message by message: the others in their calls were not repeated
    assert all(provider.calls[k] == 1 for k in keys[:10] + keys[20:30])


async def test_one_hanging_recipient_delays_nobody_else(make_settings: Any) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    tasks = [_task(r) for r in range(60)]
    hung = tasks[7]["idempotency_key"]
    provider = CountingProvider(free_port())
    provider.hang.add(hung)
    provider.start()
    metrics = DeliveryMetrics()
    try:
        async with (
            Receipts(settings) as receipts,
            _worker(settings, provider.url, metrics, timeout_s=1.0),
        ):
            await _write(settings, tasks)
            # everyone else is delivered while the provider still holds a call of the hung key
            await receipts.until(
                lambda: len({d["idempotency_key"] for d in receipts.final()}) >= 59,
                60,
                "the 59 others delivered",
            )
            assert provider.hanging >= 1 and provider.release.is_set() is False
            assert hung not in {d["idempotency_key"] for d in receipts.final()}
            # its call timed out on its own and was retried with the same key
            await receipts.until(lambda: provider.calls[hung] >= 2, 30, "the hung key retried")
            provider.release.set()
            await receipts.until(lambda: len(receipts.final()) >= 60, 60, "the hung one too")
    finally:
        provider.release.set()
        provider.stop()
    final = receipts.final()
    assert Counter(d["outcome"] for d in final) == {"delivered": 60}
    assert next(d["reason"] for d in receipts.retrying() if d["idempotency_key"] == hung) == (
        "timeout"
    )


async def test_retries_stop_when_the_alert_expires_and_an_expired_task_is_never_sent(
    make_settings: Any,
) -> None:
    # a circuit that stays closed: each failing key is called again and again
    settings = make_settings(**{**FAST, "delivery_breaker_failures": 10_000})
    await create_topics(settings)
    now = int(time.time())
    stale = [_task(r, expires=now - 1) for r in range(10)]  # expired before it was fetched
    failing = [_task(r, expires=now + 8) for r in range(10, 20)]  # 503 until it expires
    provider = CountingProvider(free_port())
    provider.refuse |= {t["idempotency_key"] for t in failing}
    provider.start()
    metrics = DeliveryMetrics()
    try:
        async with Receipts(settings) as receipts, _worker(settings, provider.url, metrics):
            await _write(settings, stale + failing)
            await receipts.until(lambda: len(receipts.final()) >= 20, 60, "all 20 settled")
    finally:
        provider.stop()
    final = receipts.final()
    assert Counter((d["outcome"], d["reason"]) for d in final) == {("failed", "expired"): 20}
    assert not any(provider.calls[t["idempotency_key"]] for t in stale)  # never sent
    for task in failing:  # tried until the alert expired, then given up
        assert provider.calls[task["idempotency_key"]] >= 2
        last = max(d["at"] for d in final if d["idempotency_key"] == task["idempotency_key"])
        assert last >= now + 8
    assert metrics.failures.labels("oa", "expired")._value.get() == 20


async def test_a_second_worker_joining_mid_run_takes_partitions_and_no_task_is_receipted_twice(
    make_settings: Any,
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    tasks = [_task(r) for r in range(400)]
    keys = {t["idempotency_key"] for t in tasks}
    # 400 calls of 0.2 s, 10 at a time: the run lasts about 8 s, the rebalance happens in it
    provider = CountingProvider(free_port(), delay_s=0.2).start()
    first, second = DeliveryMetrics(), DeliveryMetrics()
    try:
        async with (
            Receipts(settings) as receipts,
            _worker(settings, provider.url, first, concurrency=10),
        ):
            await _write(settings, tasks)
            await receipts.until(lambda: len(receipts.final()) >= 50, 60, "50 settled")
            # the rebalance revokes partitions with calls in flight: they end, commit, and
            # the new owner resumes after them
            async with _worker(settings, provider.url, second, concurrency=10):
                await receipts.until(lambda: len(receipts.final()) >= len(tasks), 90, "all")
    finally:
        provider.stop()
    final = receipts.final()
    assert Counter(d["idempotency_key"] for d in final) == Counter(dict.fromkeys(keys, 1))
    assert len({d["worker"] for d in final}) == 2  # both took a share
    assert set(provider.delivered) == keys


@pytest.mark.parametrize(
    ("options", "header"),
    [
        ({"bearer_token": "t0ken"}, "Bearer t0ken"),
        ({"basic_auth": ("loa", "pw")}, "Basic bG9hOnB3"),
    ],
)
async def test_http_provider_calls_carry_the_configured_credentials(
    options: dict[str, Any], header: str
) -> None:
    provider = CountingProvider(free_port()).start()
    channel = HttpChannel(provider.url, **options)
    try:
        outcome = await channel.send(_task(1))
    finally:
        await channel.close()
        provider.stop()
    assert outcome.status == "delivered"
    assert provider.authorization == {header}


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca"),
        *("-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")),
    )
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        _openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr")),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            *("x509", "-req", "-in", str(d / f"{name}.csr"), "-days", "2"),
            *("-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"), "-CAcreateserial"),
            *("-out", str(d / f"{name}.pem"), "-extfile", str(d / f"{name}.ext")),
        )
    return {
        n: str(d / n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


async def test_http_provider_over_mutual_tls_with_the_configured_ca_and_client_certificate(
    pki: dict[str, str],
) -> None:
    provider = CountingProvider(free_port())
    provider.url = provider.url.replace("http://", "https://")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca.pem"])
    server_tls.load_cert_chain(pki["server.pem"], pki["server.key"])
    server_tls.verify_mode = ssl.CERT_REQUIRED  # a client without a certificate is refused
    provider.start(tls=server_tls)
    settings = Settings(
        delivery_http_ca_file=pki["ca.pem"],
        delivery_http_cert_file=pki["client.pem"],
        delivery_http_key_file=pki["client.key"],
    )
    channel = HttpChannel(provider.url, timeout_s=5.0, **http_options(settings))
    stranger = HttpChannel(
        provider.url, timeout_s=5.0, **http_options(Settings(delivery_http_ca_file=pki["ca.pem"]))
    )
    try:
        assert (await channel.send(_task(1))).status == "delivered"
        # without a client certificate the TLS handshake fails: a transient connection error
        assert (await stranger.send(_task(2))).reason == "connection"
    finally:
        await channel.close()
        await stranger.close()
        provider.stop()
    assert set(provider.delivered) == {_task(1)["idempotency_key"]}


async def test_calls_to_an_endpoint_stay_under_its_rate_limit(make_settings: Any) -> None:
    rate = 40.0
    settings = make_settings(**FAST, delivery_rate_per_endpoint=rate)
    await create_topics(settings)
    tasks = [_task(r) for r in range(200)]  # unpaced, all 200 would come within a second
    provider = CountingProvider(free_port()).start()
    try:
        async with (
            Receipts(settings) as receipts,
            _worker(settings, provider.url, DeliveryMetrics()),
        ):
            await _write(settings, tasks)
            await receipts.until(lambda: len(receipts.final()) >= len(tasks), 60, "all settled")
    finally:
        provider.stop()
    assert {d["outcome"] for d in receipts.final()} == {"delivered"}
    # in any window of one second, at most a second's worth of calls plus the burst (the
    # provider's clock reads arrivals, which network and thread scheduling bunch a little)
    times = sorted(provider.arrivals)
    most = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert most <= 2 * rate * 1.25


async def test_a_fenced_producer_mid_run_starts_over_and_every_task_gets_one_receipt(
    make_settings: Any,
) -> None:
    """What a starved event loop or a second instance does to a worker: its producer is fenced
    (here by another producer taking its transactional id). The worker goes back to its
    committed offsets with a new producer instead of exiting; every task ends with exactly one
    final receipt, and repeated calls carry the same idempotency key."""
    from aiokafka import AIOKafkaProducer

    settings = make_settings(**FAST)
    await create_topics(settings)
    expires = int(time.time()) + 600
    first = [_task(r, expires=expires) for r in range(200)]
    second = [_task(r, expires=expires) for r in range(200, 400)]
    provider = CountingProvider(free_port(), delay_s=0.01).start()
    metrics = DeliveryMetrics()
    group, name = f"{settings.app_id}-deliver-fence", "fenced-worker"
    try:
        async with (
            Receipts(settings) as receipts,
            _worker(settings, provider.url, metrics, group_id=group, worker_name=name),
        ):
            await _write(settings, first)
            await receipts.until(lambda: len(receipts.final()) >= 50, 60, "50 delivered")
            usurper = AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap_servers,
                transactional_id=f"{group}-{name}",
                enable_idempotence=True,
            )
            await usurper.start()  # InitProducerId: the worker's producer is fenced
            await usurper.stop()
            await _write(settings, second)
            await receipts.until(lambda: len(receipts.final()) >= 400, 90, "all 400 settled")
        finals = Counter(d["idempotency_key"] for d in receipts.final())
        assert set(finals) == {t["idempotency_key"] for t in first + second}
        assert max(finals.values()) == 1  # one final receipt per task, read_committed
        assert metrics.recoveries._value.get() >= 1
        # repeats reach the provider only with the key it already saw
        assert set(provider.calls) <= set(finals)
    finally:
        provider.stop()
