"""``loa gateway`` over real HTTP on a real socket, against the real broker and a real worker:
every request gets a status code, ingest's decision comes back, nothing is lost or written
twice, and the conservation count holds for Kafka and HTTP together (issue 11 items 7, 8)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import socket
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiokafka import TopicPartition

from streams.demo.localrun import WorkerProcess
from streams.gateway import Gateway
from streams.gateway.auth import sign_request
from streams.ingest.agencies import load_agency_files, parse_agency, with_key
from streams.ingest.agency_service import publish_agencies
from streams.ingest.cap import detect_format
from streams.ingest.signatures import KeyPair, new_key_pair, signature_headers
from streams.kafkaio.clients import make_producer, make_reader
from streams.settings.model import Settings
from tests.integration.conftest import ROOT, TEST_AGENCY, LiveLoa, alert
from tests.integration.test_conservation import Record, _catalogue, _decisions, _signed
from tests.integration.test_observability import run_prometheus
from tests.tools.xmlsigning import cap_alert, cert_pem, new_signer, sign_xml, tls_files

pytestmark = pytest.mark.integration

SIGNER = new_signer(TEST_AGENCY)


@dataclasses.dataclass
class Door:
    """A running gateway, its base URL and an HTTP client."""

    gateway: Gateway
    url: str
    http: aiohttp.ClientSession
    #: The agency whose key signs GET requests (None: unsigned).
    key: KeyPair | None = None

    async def post(
        self,
        body: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        *,
        content_type: str | None = "auto",
    ) -> tuple[int, dict[str, Any]]:
        sent = {name: value.decode() for name, value in headers or []}
        if content_type == "auto":
            xml = detect_format(body) == "xml"
            content_type = "application/cap+xml" if xml else "application/json"
        if content_type is not None:
            sent["Content-Type"] = content_type
        async with self.http.post(
            f"{self.url}/v1/alerts", data=io.BytesIO(body), headers=sent
        ) as r:
            return r.status, await r.json(content_type=None)

    async def get(
        self,
        path: str,
        *,
        key: KeyPair | str | None = "door",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """GET ``path``, signed by ``key`` (default: the door's agency; None: unsigned)."""
        signer = self.key if key == "door" else key
        sent = dict(headers or {})
        if isinstance(signer, KeyPair) and path.startswith("/v1/alerts/"):
            sent = sign_request(signer, "GET", path, datetime.now(UTC)) | sent
        async with self.http.get(f"{self.url}{path}", headers=sent) as r:
            return r.status, await r.json(content_type=None)


@contextlib.asynccontextmanager
async def open_door(
    settings: Settings, key: KeyPair | None = None, **gateway: Any
) -> AsyncIterator[Door]:
    values = {"gateway_decision_timeout_s": 60.0, "gateway_read_timeout_s": 2.0}
    values.update({"gateway_rate": 1000.0, "gateway_burst": 10_000})
    values.update(gateway)
    door = Gateway(dataclasses.replace(settings, **values))
    port = await door.start(port=0)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            yield Door(door, f"http://127.0.0.1:{port}", http, key)
    finally:
        await door.stop()


@pytest.fixture(scope="module")
async def door(live: LiveLoa) -> AsyncIterator[Door]:
    # the test agency also signs with an X.509 certificate (XML-DSig)
    agency = next(a for a in load_agency_files(ROOT / "deploy" / "agencies" / "testing"))
    key = live.keys[TEST_AGENCY]
    doc = with_key(agency, key.key_id, key.public_key).to_doc()
    doc["certificates"] = {"gateway-test": cert_pem(SIGNER)}
    await publish_agencies(live.settings, [parse_agency(doc)])
    async with open_door(live.settings, live.keys[TEST_AGENCY]) as opened:
        yield opened


def _json_alert(live: LiveLoa, identifier: str, ward: int = 5) -> bytes:
    return orjson.dumps(alert(identifier, [live.regions.ward_codes[ward]]))


async def _inbound_end(live: LiveLoa) -> int:
    """The end offset of the (one-partition) inbound topic."""
    consumer = make_reader(live.settings)
    await consumer.start()
    try:
        tp = TopicPartition(live.settings.inbound_topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_a_retried_post_is_a_duplicate_and_fans_out_once(live: LiveLoa, door: Door) -> None:
    ident = f"G{uuid.uuid4().hex[:6]}-retry"
    body = _json_alert(live, ident, ward=11)
    first = await door.post(body, _signed(live, body))
    again = await door.post(body, _signed(live, body))
    assert first[0] == 201 and first[1]["outcome"] == "accepted", first
    assert again[0] == 200 and again[1]["outcome"] == "duplicate", again
    assert first[1]["message_id"] == again[1]["message_id"] == f"{TEST_AGENCY}/{ident}"
    alert_id = first[1]["alert_id"]
    await live.fanned_out(alert_id)
    counts, _ = await live.tasks(alert_id, "extreme")
    assert set(counts) == live.expected([live.regions.ward_codes[11]])
    assert max(counts.values()) == 1
    status, progress = await door.get(first[1]["status_url"])
    assert status == 200
    assert progress["fanout_done"] and progress["emitted"] == len(counts)
    assert progress["targeted"] == len(counts)


async def test_an_agency_reads_only_the_decisions_of_alerts_it_sent(
    live: LiveLoa, door: Door
) -> None:
    national, province = live.keys["nchmf.gov.vn"], live.keys["ubnd.quangninh.gov.vn"]
    doc = alert(f"G{uuid.uuid4().hex[:6]}-own", ["VN-22"])
    doc["sender"] = "nchmf.gov.vn"
    body = orjson.dumps(doc)
    status, posted = await door.post(body, list(signature_headers(national, body)))
    assert status == 201, posted
    link = posted["status_url"]
    by_offset = f"{link}?inbound_offset={posted['inbound_offset']}"
    for path in (link, by_offset):
        status, mine = await door.get(path, key=national)
        assert status == 200 and mine["alert_id"] == posted["alert_id"], mine
        # another agency, or nobody, learns nothing: not even that the alert exists
        status, theirs = await door.get(path, key=province)
        assert (status, theirs["error"]) == (404, "not_found"), theirs
        status, unsigned = await door.get(path, key=None)
        assert (status, unsigned["error"]) == (401, "unauthorized"), unsigned
    # walking the inbound offsets finds none of another agency's decisions
    for offset in range(posted["inbound_offset"] + 1):
        status, walked = await door.get(f"{link}?inbound_offset={offset}", key=province)
        assert status in (202, 404) and "decision" not in walked, walked
    # a signature is bound to its path and its time
    signed = sign_request(national, "GET", link, datetime.now(UTC))
    status, moved = await door.get(by_offset, key=None, headers=signed)
    assert status == 401 and "does not verify" in moved["message"]
    old = sign_request(national, "GET", link, datetime.now(UTC) - timedelta(hours=1))
    status, stale = await door.get(link, key=None, headers=old)
    assert status == 401 and "from the gateway's clock" in stale["message"]


async def test_cap_signed_with_xml_dsig_is_accepted_and_a_tampered_one_is_bad_signature(
    live: LiveLoa, door: Door
) -> None:
    ident = f"G{uuid.uuid4().hex[:6]}-dsig"
    signed = sign_xml(cap_alert(ident, TEST_AGENCY, region="VN-22"), SIGNER)
    status, body = await door.post(signed)
    assert status == 201 and body["outcome"] == "accepted", body
    tampered = sign_xml(cap_alert(ident + "-t", TEST_AGENCY), SIGNER).replace(b"VN-22", b"VN")
    status, body = await door.post(tampered)
    assert status == 422 and body["code"] == "bad_signature", body
    assert "changed after it was signed" in body["message"]


async def test_unknown_agency_is_rejected_with_unknown_sender(live: LiveLoa, door: Door) -> None:
    stranger = new_key_pair("nobody.example", "nobody/1")
    body = orjson.dumps({**alert(f"G{uuid.uuid4().hex[:6]}", ["VN"]), "sender": "nobody.example"})
    status, answer = await door.post(body, list(signature_headers(stranger, body)))
    assert status == 422 and answer["code"] == "unknown_sender", answer


async def test_wrong_content_types_are_415_and_nothing_is_written(
    live: LiveLoa, door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    body = _json_alert(live, f"G{uuid.uuid4().hex[:6]}-ct")
    before = await _inbound_end(live)
    with caplog.at_level(logging.INFO, logger="loa.gateway.access"):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            status, answer = await door.post(body, _signed(live, body), content_type=content_type)
            assert status == 415 and answer["error"] == "unsupported_media_type", answer
    assert await _inbound_end(live) == before
    assert sum("status=415" in r.getMessage() for r in caplog.records) == 3


async def test_oversized_bodies_are_413_and_nothing_is_written(live: LiveLoa, door: Door) -> None:
    before = await _inbound_end(live)
    big = b"x" * (live.settings.max_alert_bytes + 1)
    status, answer = await door.post(big)
    assert status == 413 and answer["error"] == "too_large", answer

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for _ in range(4):
            yield b"y" * (live.settings.max_alert_bytes // 2)

    async with door.http.post(
        f"{door.url}/v1/alerts", data=chunks(), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 413
    assert await _inbound_end(live) == before


async def test_a_slow_client_gets_408_and_nothing_is_written(live: LiveLoa, door: Door) -> None:
    before = await _inbound_end(live)
    host, port = door.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"identifier": '
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)  # read timeout is 2 s
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert await _inbound_end(live) == before


async def test_a_client_trickling_its_headers_is_disconnected(door: Door) -> None:
    host, port = door.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    closed = False
    try:
        for byte in head * 20:  # one byte every 0.2 s: minutes if nobody stops it
            writer.write(bytes([byte]))
            await writer.drain()
            if await _eof_within(reader, 0.2):
                closed = True
                break
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    assert closed, "the gateway kept a connection whose headers never finished"


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


async def test_over_the_agency_rate_is_429_and_a_slow_decision_is_202_with_a_link(
    live: LiveLoa,
) -> None:
    async with open_door(
        live.settings,
        live.keys[TEST_AGENCY],
        gateway_rate=0.001,
        gateway_burst=2,
        gateway_decision_timeout_s=0.0,
    ) as slow:
        ident = f"G{uuid.uuid4().hex[:6]}-rate"
        answers = []
        for n in range(3):
            body = _json_alert(live, f"{ident}-{n}")
            answers.append(await slow.post(body, _signed(live, body)))
        assert [s for s, _ in answers] == [202, 202, 429], answers
        link = answers[0][1]["status_url"]
        assert f"inbound_offset={answers[0][1]['inbound_offset']}" in link
        decision = None
        for _ in range(120):  # bounded: the worker decides within seconds
            status, body = await slow.get(link)
            decision = body.get("decision") if status == 200 else None
            if decision:
                break
            await asyncio.sleep(0.5)
        assert decision is not None and decision["outcome"] == "accepted", decision


def _http_expected(live: LiveLoa, record: Record) -> tuple[int, str] | None:
    """(status, outcome or code) the gateway answers for a catalogue record; None: not sendable
    over HTTP (a null value)."""
    value, _, code = record
    if value is None:
        return None
    if len(value) > live.settings.max_alert_bytes:
        return 413, "too_large"
    return {"accepted": (201, code), "duplicate": (200, code)}.get(code, (422, code))


async def test_hostile_bodies_get_ingests_decision_and_conservation_holds_for_kafka_and_http(
    live: LiveLoa, door: Door
) -> None:
    run = f"H{uuid.uuid4().hex[:6]}"
    catalogue = _catalogue(live, run)  # the conservation test's hostile set
    over_http = [r for r in catalogue if _http_expected(live, r) is not None]
    over_kafka = _catalogue(live, run + "k")

    async def via_kafka() -> list[int]:
        producer = make_producer(live.settings, max_request_size=12 * 1024 * 1024)
        await producer.start()
        try:
            futures = [
                await producer.send(live.settings.inbound_topic, v, key=b"k", headers=h or None)
                for v, h, _ in over_kafka
            ]
            return [(await f).offset for f in futures]
        finally:
            await producer.stop()

    async def via_http() -> list[tuple[int, dict[str, Any]]]:
        return [await door.post(v or b"", h) for v, h, _ in over_http]

    start = await _inbound_end(live)
    kafka_offsets, answers = await asyncio.gather(via_kafka(), via_http())
    inbound = await _inbound_end(live) - start  # records written by both doors

    # every request got the status (and code) its record deserves
    got = [
        (status, body.get("code") or body.get("error") or body["outcome"])
        for status, body in answers
    ]
    assert got == [_http_expected(live, r) for r in over_http]
    http_offsets = [body["inbound_offset"] for _, body in answers if "inbound_offset" in body]
    assert len(http_offsets) == sum(1 for status, _ in answers if status != 413)

    # conservation: inbound records = accepted + duplicate + rejected, both doors together
    offsets = set(kafka_offsets) | set(http_offsets)
    assert len(offsets) == len(kafka_offsets) + len(http_offsets) == inbound
    decided = await _decisions(live, offsets)
    assert set(decided) == offsets, "every inbound record has a decision"
    assert all(n == 1 for _, n in decided.values()), "and only one"
    outcomes = Counter(outcome for outcome, _ in decided.values())
    rejected = sum(n for o, n in outcomes.items() if o not in ("accepted", "duplicate"))
    assert inbound == outcomes["accepted"] + outcomes["duplicate"] + rejected
    expected_kafka = {o: code for o, (_, _, code) in zip(kafka_offsets, over_kafka, strict=True)}
    assert {o: decided[o][0] for o in kafka_offsets} == expected_kafka
    for _, body in answers:  # the HTTP answer is the decision on Kafka
        if "inbound_offset" in body:
            assert decided[body["inbound_offset"]][0] == (body.get("code") or body["outcome"])


async def test_prometheus_reads_the_gateways_answers_by_status_and_outcome(
    live: LiveLoa, tmp_path: Path
) -> None:
    async with open_door(live.settings, live.keys[TEST_AGENCY]) as fresh:
        ident = f"G{uuid.uuid4().hex[:6]}-prom"
        sent: Counter[int] = Counter()
        for n in (1, 2, 2):  # two alerts, then the second again
            body = _json_alert(live, f"{ident}-{n}")
            sent[(await fresh.post(body, _signed(live, body)))[0]] += 1
        sent[(await fresh.post(b"{}", content_type="text/plain"))[0]] += 1
        assert sent == {201: 2, 200: 1, 415: 1}
        status, health = await fresh.get("/v1/health")
        assert status == 200 and health == {"ok": True}
        status, missing = await fresh.get(f"/v1/alerts/{quote('no.such/alert', safe='')}")
        assert status == 404 and missing["error"] == "not_found"

        with run_prometheus([fresh.url.removeprefix("http://")], tmp_path) as prom:

            def scraped() -> dict[str, float | None]:
                metric = "loa_gateway_requests_total"
                got = {
                    str(code): prom.scalar(f'{metric}{{route="post_alert",status="{code}"}}')
                    for code in sent
                }
                got["duplicate"] = prom.scalar('loa_gateway_outcomes_total{outcome="duplicate"}')
                return got

            want = {**{str(code): float(n) for code, n in sent.items()}, "duplicate": 1.0}
            for _ in range(120):  # bounded: Prometheus scrapes every second
                if scraped() == want:
                    break
                await asyncio.sleep(0.5)
            assert scraped() == want


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_loa_gateway_serves_https_and_requires_a_client_certificate(
    live: LiveLoa, door: Door, tmp_path: Path
) -> None:
    files = tls_files(tmp_path)
    port = _free_port()
    process = WorkerProcess(
        live.settings,
        tmp_path / "gateway.log",
        command=("gateway",),
        LOA_GATEWAY_PORT=str(port),
        LOA_GATEWAY_TLS_CERT=str(files["server_cert"]),
        LOA_GATEWAY_TLS_KEY=str(files["server_key"]),
        LOA_GATEWAY_TLS_CLIENT_CA=str(files["ca"]),
        LOA_LOG_FORMAT="json",
        LOA_GATEWAY_DECISION_TIMEOUT_S="90",
    ).start()
    trusted = ssl.create_default_context(cafile=str(files["ca"]))
    with_cert = ssl.create_default_context(cafile=str(files["ca"]))
    with_cert.load_cert_chain(str(files["client_cert"]), str(files["client_key"]))
    url = f"https://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            for _ in range(120):  # bounded: the gateway is up within seconds
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/v1/health", ssl=with_cert) as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.5)
            body = _json_alert(live, f"G{uuid.uuid4().hex[:6]}-tls")
            headers = {n: v.decode() for n, v in _signed(live, body)}
            headers["Content-Type"] = "application/json"
            async with http.post(
                f"{url}/v1/alerts", data=body, headers=headers, ssl=with_cert
            ) as r:
                assert r.status == 201, await r.text()
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"{url}/v1/health", ssl=trusted) as r:
                    await r.read()
    finally:
        process.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert '"access":"POST"' in log and '"status":"201"' in log
