"""SMS over SMPP 3.4 against a real SMSC: deploy/smsc/LoaSmsc.java on jSMPP, installed by
``make setup`` (``deploy/smsc/smsc.sh install``). These tests never install it: when it is
missing they fail, saying how to install it.

Deliveries are counted at the SMSC's own log (one JSON line per accepted submit_sm), outside
Loa, and receipts with a plain read_committed reader. The SMSC throttles (ESME_RTHROTTLED),
answers "queue full" and drops every connection on command."""

from __future__ import annotations

import asyncio
import select
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.delivery import deliver
from streams.delivery.content import AlertContent
from streams.delivery.smpp import SmppChannel, decode_segment
from streams.delivery.worker import DeliveryMetrics
from streams.kafkaio.clients import create_topics
from streams.settings.model import Settings
from tests.integration.conftest import run_loa
from tests.integration.test_delivery import _write_with_content
from tests.integration.test_delivery_retries import FAST, Receipts, free_port

pytestmark = pytest.mark.integration

SMSC_SH = Path(__file__).resolve().parents[2] / "deploy" / "smsc" / "smsc.sh"
VIETNAMESE = "Bão số 3 đổ bộ đêm nay. Người dân ven biển sơ tán ngay đến nơi trú ẩn gần nhất."


class Smsc:
    """The test SMSC as a child process; commands on its stdin, events from its log."""

    def __init__(self, log: Path) -> None:
        installed = subprocess.run(
            ["bash", str(SMSC_SH), "classpath"], capture_output=True, text=True, check=False
        )
        if installed.returncode != 0:
            pytest.fail(f"test SMSC missing: {installed.stderr.strip()}", pytrace=False)
        self.port, self.log = free_port(), log
        self.proc = subprocess.Popen(
            ["bash", str(SMSC_SH), "run", str(self.port), "loa", "secret", str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line(30).startswith("LISTENING"), "the SMSC did not start"

    def _line(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            pytest.fail("the test SMSC did not answer on stdout", pytrace=False)
        return self.proc.stdout.readline()

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self._line(10).strip() == f"OK {line}"

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        docs = [orjson.loads(line) for line in self.log.read_text().splitlines() if line]
        return [d for d in docs if kind is None or d["event"] == kind]

    def texts_by_destination(self) -> dict[str, list[str]]:
        """Accepted submit_sm by destination, each decoded (UDH stripped)."""
        out: dict[str, list[str]] = defaultdict(list)
        for d in self.events("submit_sm"):
            sm = bytes.fromhex(d["short_message"])
            out[d["dest"]].append(decode_segment(sm, d["data_coding"], d["esm_class"])[0])
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[Smsc]:
    server = Smsc(tmp_path / "smsc.jsonl")
    yield server
    server.stop()


def _channel(smsc: Smsc, text: str | None = VIETNAMESE, **options: Any) -> SmppChannel:
    async def text_of(task: dict[str, Any]) -> str | None:
        return text

    options.setdefault("reconnect_base_s", 0.1)
    return SmppChannel("127.0.0.1", smsc.port, "loa", "secret", text_of, **options)


def _task(recipient: int, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": "test.agency.vn/S1",
        "version": 1,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": recipient,
        "channel": "sms",
        "fallback": [],
        "language": "vi",
        "idempotency_key": f"test.agency.vn/S1:1:{recipient}",
        **extra,
    }


# ---------------------------------------------------------------- the channel and the SMSC


async def test_vietnamese_arrives_as_ucs2_in_two_concatenated_segments(smsc: Smsc) -> None:
    channel = _channel(smsc)
    try:
        assert (await channel.send(_task(84900000001))).status == "delivered"
    finally:
        await channel.close()
    submits = smsc.events("submit_sm")
    assert [(d["data_coding"], d["esm_class"]) for d in submits] == [(8, 0x40), (8, 0x40)]
    udhs = [bytes.fromhex(d["short_message"])[:6] for d in submits]
    assert udhs[0][:5] == udhs[1][:5] and udhs[0][4:] == b"\x02\x01" and udhs[1][5] == 2
    assert "".join(smsc.texts_by_destination()["84900000001"]) == VIETNAMESE
    assert smsc.events("bind")[0]["type"] == "BIND_TX"


async def test_ascii_goes_as_gsm_7_bit_in_one_sms(smsc: Smsc) -> None:
    channel = _channel(smsc, "Typhoon 3: evacuate the coast now {zone A}")
    try:
        assert (await channel.send(_task(84900000002))).status == "delivered"
    finally:
        await channel.close()
    [submit] = smsc.events("submit_sm")
    assert (submit["data_coding"], submit["esm_class"]) == (0, 0)
    assert smsc.texts_by_destination()["84900000002"] == [
        "Typhoon 3: evacuate the coast now {zone A}"
    ]


async def test_throttling_and_a_full_queue_ask_for_a_pause_and_a_bad_number_fails(
    smsc: Smsc,
) -> None:
    channel = _channel(smsc, "short", throttle_pause_s=0.7)
    try:
        smsc.command("throttle 1")
        outcome = await channel.send(_task(84900000003))
        assert (outcome.status, outcome.reason, outcome.after_s) == ("retry", "rate_limited", 0.7)
        smsc.command("qfull 1")
        assert (await channel.send(_task(84900000003))).reason == "rate_limited"
        assert (await channel.send(_task(84900000003))).status == "delivered"
        bad = _channel(smsc, "short", address_template="x{recipient_id}")
        try:
            outcome = await bad.send(_task(7))
        finally:
            await bad.close()
        assert (outcome.status, outcome.reason) == ("failed", "smpp_invalid_destination_address")
    finally:
        await channel.close()
    assert len(smsc.events("throttled")) == 1 and len(smsc.events("qfull")) == 1
    assert len(smsc.events("submit_sm")) == 1


async def test_a_dropped_connection_turns_calls_in_flight_into_retries_and_the_next_call_rebinds(
    smsc: Smsc,
) -> None:
    channel = _channel(smsc, "short", window=50)
    try:
        assert (await channel.send(_task(84900000010))).status == "delivered"
        smsc.command("drop")
        await asyncio.sleep(0.2)  # the reader sees the close
        outcomes = await asyncio.gather(*(channel.send(_task(84900000011 + i)) for i in range(20)))
        assert {o.status for o in outcomes} == {"delivered"}
        assert channel.binds == 2
    finally:
        await channel.close()


async def test_a_wrong_password_is_a_connection_retry_with_back_off(smsc: Smsc) -> None:
    async def text_of(task: dict[str, Any]) -> str:
        return "short"

    channel = SmppChannel(
        "127.0.0.1", smsc.port, "loa", "wrong", text_of, reconnect_base_s=30, response_timeout_s=5
    )
    try:
        first = await channel.send(_task(84900000020))
        again = await channel.send(_task(84900000020))  # inside the back-off: no new bind
    finally:
        await channel.close()
    assert (first.status, first.reason) == (again.status, again.reason) == ("retry", "connection")
    assert len(smsc.events("bind_rejected")) == 1 and not smsc.events("submit_sm")


async def test_delivery_receipts_are_counted_by_their_stat(smsc: Smsc) -> None:
    smsc.command("receipts on")
    channel = _channel(smsc, "short", registered_delivery=True)
    try:
        for i in range(5):
            assert (await channel.send(_task(84900000030 + i))).status == "delivered"
        deadline = time.monotonic() + 10
        while channel.receipts["DELIVRD"] < 5 and time.monotonic() < deadline:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.05)
    finally:
        await channel.close()
    assert channel.receipts == Counter({"DELIVRD": 5})
    assert smsc.events("bind")[0]["type"] == "BIND_TRX"
    assert all(d["registered_delivery"] == 1 for d in smsc.events("submit_sm"))


# ---------------------------------------------------------------- through the broker


async def _publish(
    settings: Settings, tasks: list[dict[str, Any]], infos: list[Any] | None = None
) -> None:
    """The accepted alert (its text) and the fan-out's sms tasks, as ingest and fanout write."""
    await _write_with_content(settings, "test.agency.vn/S1", infos, tasks)


async def _run_worker(
    settings: Settings, smsc: Smsc, tasks: list[dict[str, Any]], during: Any
) -> list[dict[str, Any]]:
    """A delivery worker with the smpp channel until every task has a final receipt; the first
    100 tasks are written before, ``during`` runs once their first receipts are in, then the
    rest are written. Returns the final receipts."""
    channel = SmppChannel(
        "127.0.0.1",
        smsc.port,
        "loa",
        "secret",
        AlertContent(settings).sms_text,
        address_template="849{recipient_id:08d}",
        window=20,
        throttle_pause_s=0.3,
        reconnect_base_s=0.1,
        response_timeout_s=5,
    )
    stop = asyncio.Event()
    run = asyncio.create_task(
        deliver(settings, provider=channel, channel="sms", metrics=DeliveryMetrics(), stop=stop)
    )
    try:
        async with Receipts(settings) as receipts:
            await receipts.until(lambda: len(receipts.final()) >= 20, 90, "first receipts")
            await during()
            await _publish(settings, tasks[100:])
            await receipts.until(
                lambda: len(receipts.final()) >= len(tasks), 120, "every task settled"
            )
            return receipts.final()
    finally:
        stop.set()
        try:
            await asyncio.wait_for(run, 60)
        finally:
            await channel.close()


async def test_sms_tasks_reach_the_smsc_once_each_while_it_throttles(
    make_settings: Any, smsc: Smsc
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    tasks = [_task(r, expires=int(time.time()) + 600) for r in range(300)]
    infos = [{"language": "en", "event": "Typhoon", "headline": "Typhoon 3", "instruction": "Go"}]
    await _publish(settings, tasks[:100], infos)

    async def throttle() -> None:
        smsc.command("throttle 60")

    final = await _run_worker(settings, smsc, tasks, throttle)
    assert Counter(d["outcome"] for d in final) == Counter({"delivered": 300})
    assert len(smsc.events("throttled")) == 60  # the SMSC did push back
    by_dest = smsc.texts_by_destination()
    assert set(by_dest) == {f"849{r:08d}" for r in range(300)}
    assert {dest: len(texts) for dest, texts in by_dest.items() if len(texts) != 1} == {}
    assert set(by_dest["84900000007"]) == {"Typhoon 3: Go"}


async def test_the_smsc_dropping_every_connection_mid_run_loses_nobody(
    make_settings: Any, smsc: Smsc
) -> None:
    settings = make_settings(**FAST)
    await create_topics(settings)
    tasks = [_task(r, expires=int(time.time()) + 600) for r in range(300)]
    headline, instruction = VIETNAMESE.split(". ", 1)
    infos = [{"language": "vi", "event": "Bão", "headline": headline, "instruction": instruction}]
    await _publish(settings, tasks[:100], infos)

    async def drop() -> None:
        smsc.command("drop")

    final = await _run_worker(settings, smsc, tasks, drop)
    assert Counter(d["outcome"] for d in final) == Counter({"delivered": 300})
    assert len(smsc.events("bind")) >= 2  # it reconnected
    segments: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for d in smsc.events("submit_sm"):
        sm = bytes.fromhex(d["short_message"])
        assert d["data_coding"] == 8 and d["esm_class"] == 0x40
        segments[d["dest"]].add((sm[4], sm[5]))  # (total, sequence) of the UDH
    # every recipient has the whole message: both segments of one UCS-2 SMS
    assert {dest: s for dest, s in segments.items() if s != {(2, 1), (2, 2)}} == {}
    assert len(segments) == 300
    # repeats (a submit_sm accepted but its response lost in the drop) are bounded by the window
    repeats = len(smsc.events("submit_sm")) - 2 * 300
    assert 0 <= repeats <= 2 * 20


# ---------------------------------------------------------------- loa deliver --provider smpp


async def test_loa_deliver_provider_smpp_sends_each_sms_task_once_to_the_smsc(
    make_settings: Any, smsc: Smsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    await create_topics(settings)
    tasks = [_task(r, expires=int(time.time()) + 600) for r in range(50)]
    tasks += [_task(r, channel="push") for r in range(1000, 1010)]  # not for an SMS worker
    infos = [{"language": "vi", "event": "Bão", "headline": "Bão số 3", "instruction": "Sơ tán"}]
    await _publish(settings, tasks, infos)
    password = tmp_path / "smpp-password"
    password.write_text("secret\n")
    monkeypatch.setenv("LOA_DELIVERY_SMPP_SYSTEM_ID", "loa")
    monkeypatch.setenv("LOA_DELIVERY_SMPP_PASSWORD_FILE", str(password))
    monkeypatch.setenv("LOA_DELIVERY_SMPP_ADDRESS_TEMPLATE", "849{recipient_id:08d}")
    url = f"smpp://127.0.0.1:{smsc.port}"
    args = ("--provider", "smpp", "--url", url, "--max-tasks", "50", "--idle-exit", "20")
    code, out, err = await run_loa(settings, "deliver", *args)
    assert code == 0, out + err
    assert "delivered 50" in out
    by_dest = smsc.texts_by_destination()
    assert by_dest == {f"849{r:08d}": ["Bão số 3: Sơ tán"] for r in range(50)}


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("--provider", "smpp", "--url", "http://smsc:2775"), {}, "smpp://host:port"),
        (("--provider", "smpp", "--url", "smpp://smsc:2775"), {}, "SYSTEM_ID"),
        (
            ("--provider", "smpp", "--url", "smpp://smsc:2775"),
            {"LOA_DELIVERY_SMPP_SYSTEM_ID": "loa", "LOA_DELIVERY_SMPP_PASSWORD_FILE": "/none"},
            "LOA_DELIVERY_SMPP_PASSWORD_FILE",
        ),
        (("--provider", "smpp"), {}, "needs --url"),
        (("--provider", "push", "--url", "ftp://fcm"), {}, "http:// or https://"),
        (("--provider", "push", "--url", "https://fcm.example"), {}, "PUSH_PROJECT"),
        (("--provider", "push", "--url", "https://f", "--channel", "sms"), {}, "only --channel"),
    ],
)
async def test_bad_smpp_and_push_options_are_refused_with_exit_2(
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    needle: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = await run_loa(make_settings(), "deliver", *args)
    assert code == 2, out + err
    assert needle in err
