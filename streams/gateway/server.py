"""The HTTP server of ``loa gateway`` (aiohttp, which Faust already brings).

Routes (``schemas/gateway.openapi.yaml``): ``POST /v1/alerts``, ``GET /v1/alerts/{alert_id}``
(signed by the asking agency, :mod:`streams.gateway.auth`: an agency reads only the decisions
and progress of lineages it sent a message in; 401 unsigned, 404 anything else),
``GET /v1/health``, ``GET /metrics``. A POST is checked in this order, each refusal answered
before anything is written: content type (415), declared or actual size over
``LOA_MAX_ALERT_BYTES`` (413), body not received within ``LOA_GATEWAY_READ_TIMEOUT_S`` (408),
the sender's rate (429). Then the body and Loa's signature headers go to the inbound topic
through :func:`streams.agency.inbound.send_inbound` (503 if Kafka cannot take it) and the answer is
ingest's decision (201 / 200 / 422) or, after ``LOA_GATEWAY_DECISION_TIMEOUT_S``, 202.

Guarantee: every request gets a status code and one access-log line; a body is written to
Kafka at most once per request (a client that retries after a timeout writes it again, and
ingest answers ``duplicate`` for an alert it already accepted: no second fan-out).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.agency.inbound import alert_ids, send_inbound
from streams.errors import AgenciesNotReady
from streams.gateway.auth import Unauthorized, verify_request
from streams.gateway.decisions import DecisionFollower
from streams.gateway.policy import (
    CONTENT_TYPES,
    Answer,
    TokenBuckets,
    decision_answer,
    error_answer,
    pending_answer,
)
from streams.ingest.agency_service import AgencyRegistryService
from streams.ingest.signatures import KEY_ID_HEADER, SIGNATURE_HEADER
from streams.kafkaio.clients import make_producer
from streams.kafkaio.replica import CompactedReplica
from streams.receipts.status import StatusReader
from streams.settings.model import Settings

__all__ = ["Gateway", "GatewayMetrics", "check_settings", "tls_context"]

log = logging.getLogger("loa.gateway")
access_log = logging.getLogger("loa.gateway.access")

_ROUTES = {"/v1/alerts": "post_alert", "/v1/health": "health", "/metrics": "metrics"}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: How long a GET waits for the registry and lineage replicas to catch up with their topics.
_STATE_WAIT_S = 10.0
#: ``key=value`` fields a handler adds to the request's access-log line.
_LOG_FIELDS = web.RequestKey("log_fields", dict[str, Any])


class GatewayMetrics:
    """The gateway's Prometheus metrics, on an injected registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "loa_gateway_requests_total",
            "HTTP requests answered by the gateway, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "loa_gateway_outcomes_total",
            "POST /v1/alerts answers by outcome (accepted, duplicate, rejected, pending, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "loa_gateway_request_seconds",
            "Time from request to answer, by route.",
            ["route"],
            registry=self.registry,
        )


def check_settings(settings: Settings) -> None:
    """Fail closed on a gateway configuration that would be insecure or incomplete."""
    if bool(settings.gateway_tls_cert) != bool(settings.gateway_tls_key):
        raise ValueError("LOA_GATEWAY_TLS_CERT and LOA_GATEWAY_TLS_KEY go together")
    if settings.gateway_tls_client_ca and not settings.gateway_tls_cert:
        raise ValueError("LOA_GATEWAY_TLS_CLIENT_CA needs LOA_GATEWAY_TLS_CERT (mutual TLS)")
    if not settings.gateway_tls_cert and settings.gateway_host not in _LOOPBACK:
        raise ValueError(
            f"LOA_GATEWAY_HOST={settings.gateway_host} is not loopback: set LOA_GATEWAY_TLS_CERT"
            " and LOA_GATEWAY_TLS_KEY (plain HTTP is served on loopback only)"
        )
    if settings.gateway_rate <= 0 or settings.gateway_burst < 1:
        raise ValueError("LOA_GATEWAY_RATE must be > 0 and LOA_GATEWAY_BURST >= 1")
    if settings.gateway_decision_timeout_s < 0 or settings.gateway_read_timeout_s <= 0:
        raise ValueError("gateway timeouts must be positive")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2+), requiring client certificates when a client CA is
    set; ``None`` without a certificate (plain HTTP on loopback)."""
    if not settings.gateway_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.gateway_tls_cert, settings.gateway_tls_key)
    if settings.gateway_tls_client_ca:
        context.load_verify_locations(cafile=settings.gateway_tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """The gateway's state (producer, decision follower, rate buckets, metrics) and its app."""

    def __init__(self, settings: Settings, *, metrics: GatewayMetrics | None = None) -> None:
        check_settings(settings)
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.buckets = TokenBuckets(settings.gateway_rate, settings.gateway_burst)
        self.follower = DecisionFollower(settings)
        #: who may read what: the registry (request signatures) and each accepted message's
        #: lineage and sender (``loa.alerts.accepted``, replayed from the start)
        self.agencies = AgencyRegistryService(settings)
        self.lineages: CompactedReplica[tuple[str, str]] = CompactedReplica(
            settings, settings.accepted_topic, partitions=1, decode=_lineage_sender, name="lineages"
        )
        self._producer: AIOKafkaProducer | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_alert_bytes, middlewares=[self._middleware]
        )
        app.router.add_post("/v1/alerts", self.post_alert)
        app.router.add_get("/v1/alerts/{alert_id:.+}", self.get_alert)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/metrics", self.serve_metrics)
        return app

    async def start(self, *, port: int | None = None) -> int:
        """Connect to Kafka, then serve; the bound port (``port=0``: any free one)."""
        self._producer = make_producer(self.settings)
        await self._producer.start()
        await self.follower.start()
        await self.agencies.start()
        await self.lineages.start()
        # keepalive_timeout also closes a connection whose request line and headers do not
        # arrive in time (aiohttp has no separate header timeout): slow-header clients
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.settings.gateway_read_timeout_s,
        )
        await self._runner.setup()
        context = tls_context(self.settings)
        # bind the socket here: with port 0 the caller learns which port it got
        sock = socket.create_server(
            (self.settings.gateway_host, self.settings.gateway_port if port is None else port)
        )
        bound = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=context).start()
        log.info("gateway on %s:%d", self.settings.gateway_host, bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.follower.stop()
        await self.agencies.stop()
        await self.lineages.stop()
        if self._producer is not None:
            await self._producer.stop()

    # --- middleware: status for everything, one access line, metrics ---------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        route = _ROUTES.get(
            request.path, "get_alert" if request.path.startswith("/v1/alerts/") else "other"
        )
        fields: dict[str, Any] = {}
        request[_LOG_FIELDS] = fields
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = _json(error_answer(413, "too_large", self._too_large()))
        except web.HTTPException as exc:
            answer = error_answer(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
            response = _json(answer)
        except Exception:  # a bug: still a status code, and the traceback in the log
            log.exception("gateway request failed")
            response = _json(error_answer(500, "internal", "internal error, see the gateway log"))
        seconds = time.monotonic() - started
        self.metrics.requests.labels(route, str(response.status)).inc()
        self.metrics.seconds.labels(route).observe(seconds)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        line = {
            "access": request.method,
            "path": request.path,
            "status": response.status,
            "ms": f"{seconds * 1000:.1f}",
            "remote": peer[0] if peer else "-",
            "bytes_in": request.content_length if request.content_length is not None else "-",
            **fields,
        }
        access_log.info(" ".join(f"{k}={_token(v)}" for k, v in line.items()))
        return response

    def _too_large(self) -> str:
        return f"the body is over the limit of {self.settings.max_alert_bytes} bytes"

    # --- routes ---------------------------------------------------------------------------

    async def post_alert(self, request: web.Request) -> web.StreamResponse:
        answer = await self._post(request)
        request[_LOG_FIELDS]["outcome"] = answer.body["outcome"]
        self.metrics.outcomes.labels(answer.body["outcome"]).inc()
        return _json(answer)

    async def _post(self, request: web.Request) -> Answer:
        settings = self.settings
        if request.content_type not in CONTENT_TYPES:
            kinds = ", ".join(sorted(CONTENT_TYPES))
            return error_answer(
                415, "unsupported_media_type", f"Content-Type must be one of {kinds}"
            )
        if (request.content_length or 0) > settings.max_alert_bytes:
            return error_answer(413, "too_large", self._too_large())
        try:
            async with asyncio.timeout(settings.gateway_read_timeout_s):
                raw = await request.read()
        except TimeoutError:
            return error_answer(
                408, "timeout", f"body not received within {settings.gateway_read_timeout_s} s"
            )
        ids = alert_ids(raw, settings.max_alert_bytes)
        sender = ids[0] if ids else "-"
        request[_LOG_FIELDS]["sender"] = sender
        wait = self.buckets.take(sender, time.monotonic())
        if wait > 0:
            return error_answer(
                429,
                "rate_limited",
                f"over {settings.gateway_rate}/s (burst {settings.gateway_burst}) for {sender}",
                **{"Retry-After": str(max(1, round(wait)))},
            )
        headers = [
            (name, value.encode("utf-8", errors="replace"))
            for name in (SIGNATURE_HEADER, KEY_ID_HEADER)
            for value in request.headers.getall(name, [])
        ]
        try:
            assert self._producer is not None
            offset = await send_inbound(self._producer, settings, raw, headers)
        except KafkaError as exc:
            log.warning("inbound write failed: %s", exc)
            return error_answer(
                503,
                "unavailable",
                f"could not write to Kafka ({type(exc).__name__}): retry",
                **{"Retry-After": "5"},
            )
        request[_LOG_FIELDS]["offset"] = offset
        try:
            decided = await self.follower.wait(offset, settings.gateway_decision_timeout_s)
        except RuntimeError:
            decided = None  # the follower is down: the record is written, the answer pending
        if decided is None:
            return pending_answer(offset, f"{ids[0]}/{ids[1]}" if ids else "-")
        return decision_answer(*decided, inbound_offset=offset)

    async def get_alert(self, request: web.Request) -> web.StreamResponse:
        try:
            registry = await self.agencies.ready(timeout_s=_STATE_WAIT_S)
        except AgenciesNotReady:
            return _json(error_answer(503, "unavailable", "the agency registry is not caught up"))
        try:
            agency = verify_request(
                registry, request.headers, request.method, request.path_qs, datetime.now(UTC)
            )
        except Unauthorized as exc:
            return _json(error_answer(401, "unauthorized", exc.reason))
        request[_LOG_FIELDS]["agency"] = agency
        alert_id = request.match_info["alert_id"]
        decision: dict[str, Any] | None = None
        text = request.query.get("inbound_offset")
        if text is not None:
            if not (text.isascii() and text.isdigit()):
                return _json(error_answer(400, "bad_request", "inbound_offset is not a number"))
            decided = self.follower.known(int(text))
            if decided is None:  # not decided yet (or longer ago than the follower keeps)
                return _json(pending_answer(int(text), alert_id))
            if decided[1].get("sender") != agency:  # another agency's record: as if unknown
                return _json(_not_yours(alert_id))
            decision = decision_answer(*decided, inbound_offset=int(text)).body
            if decided[0] == "accepted":
                alert_id = str(decided[1]["alert_id"])
        if decision is None or decision.get("outcome") == "accepted":
            await self.lineages.ready(timeout_s=_STATE_WAIT_S)
            if (alert_id, agency) not in self.lineages.items().values():
                return _json(_not_yours(alert_id))
            async with StatusReader(self.settings, alert_id) as reader:
                await reader.catch_up()
                status = reader.status()
        else:  # a rejection or duplicate of this agency's own record
            return web.json_response({"decision": decision}, dumps=_dumps)
        body = {
            **asdict(status),
            "fanout_done": status.fanout_done,
            "done": status.done,
            "decision": decision,
        }
        return web.json_response(body, dumps=_dumps)

    async def health(self, request: web.Request) -> web.StreamResponse:
        ok = self.follower.healthy
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def serve_metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _lineage_sender(key: bytes, value: bytes) -> tuple[str, str]:
    doc = orjson.loads(value)
    return str(doc["alert_id"]), str(doc["sender"])


def _not_yours(alert_id: str) -> Answer:
    """One answer for "no such alert" and "not yours": the difference is not told."""
    return error_answer(404, "not_found", f"no decision or progress for {alert_id} of yours")


def _token(value: object) -> str:
    """A log token: no whitespace or control characters (a body's sender is untrusted), capped."""
    text = str(value)
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text[:128]) or "-"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json(answer: Answer) -> web.Response:
    return web.json_response(
        answer.body, status=answer.status, headers=answer.headers, dumps=_dumps
    )


def openapi_path() -> Path:
    """``schemas/gateway.openapi.yaml``: the API document of these routes."""
    return Path(__file__).resolve().parents[2] / "schemas" / "gateway.openapi.yaml"
