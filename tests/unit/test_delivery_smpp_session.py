"""The SMPP session's own rules against a scripted SMSC on loopback (no broker, no jSMPP): the
window of outstanding submit_sm, sequence numbers, an unanswered enquire_link dropping the
session, and an SMSC's unbind."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streams.delivery.smpp import (
    BIND_TRANSMITTER,
    ENQUIRE_LINK,
    RESP,
    SUBMIT_SM,
    UNBIND,
    SmppChannel,
    encode_pdu,
)


class ScriptedSmsc:
    """Answers binds; answers submit_sm after ``delay_s``; answers enquire_link unless
    ``mute_enquire_link``; records what it saw."""

    def __init__(self, *, delay_s: float = 0.05, mute_enquire_link: bool = False) -> None:
        self.delay_s, self.mute_enquire_link = delay_s, mute_enquire_link
        self.outstanding = self.max_outstanding = 0
        self.sequences: list[int] = []
        self.binds = self.enquire_links = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                length, command, _status, seq = struct.unpack(">IIII", await reader.readexactly(16))
                await reader.readexactly(length - 16)
                if command == BIND_TRANSMITTER:
                    self.binds += 1
                    writer.write(encode_pdu(command | RESP, seq, b"smsc\0"))
                elif command == ENQUIRE_LINK:
                    self.enquire_links += 1
                    if not self.mute_enquire_link:
                        writer.write(encode_pdu(command | RESP, seq))
                elif command == SUBMIT_SM:
                    self.sequences.append(seq)
                    self.outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, self.outstanding)
                    task = asyncio.create_task(self._answer(writer, seq))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif command == UNBIND:
                    writer.write(encode_pdu(command | RESP, seq))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, seq: int) -> None:
        await asyncio.sleep(self.delay_s)
        self.outstanding -= 1
        writer.write(encode_pdu(SUBMIT_SM | RESP, seq, b"id\0"))


@asynccontextmanager
async def scripted(smsc: ScriptedSmsc) -> AsyncIterator[int]:
    server = await asyncio.start_server(smsc.handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in smsc.writers:
            writer.close()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*smsc.tasks, return_exceptions=True)


async def _text(task: dict[str, Any]) -> str:
    return "short"


def _task(n: int) -> dict[str, Any]:
    return {"recipient_id": 84900000000 + n, "idempotency_key": f"a:1:{n}"}


async def test_no_more_submit_sm_than_the_window_await_their_response() -> None:
    smsc = ScriptedSmsc(delay_s=0.05)
    async with scripted(smsc) as port:
        channel = SmppChannel("127.0.0.1", port, "loa", "pw", _text, window=3)
        try:
            outcomes = await asyncio.gather(*(channel.send(_task(n)) for n in range(12)))
        finally:
            await channel.close()
    assert {o.status for o in outcomes} == {"delivered"}
    assert smsc.max_outstanding == 3
    assert sorted(smsc.sequences) == list(range(2, 14))  # 1 was the bind; each request its own


async def test_an_unanswered_enquire_link_drops_the_session_and_the_next_call_rebinds() -> None:
    smsc = ScriptedSmsc(mute_enquire_link=True)
    async with scripted(smsc) as port:
        channel = SmppChannel(
            "127.0.0.1", port, "loa", "pw", _text, enquire_link_s=0.05, response_timeout_s=0.2
        )
        try:
            assert (await channel.send(_task(1))).status == "delivered"
            while smsc.enquire_links < 1 or channel.binds < 1:  # noqa: ASYNC110 (counters)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.4)  # the enquire_link's response timeout passes
            assert (await channel.send(_task(2))).status == "delivered"
        finally:
            await channel.close()
    assert smsc.binds == 2 and channel.binds == 2


async def test_a_response_that_never_comes_is_a_timeout_retry() -> None:
    smsc = ScriptedSmsc(delay_s=0.5)
    async with scripted(smsc) as port:
        channel = SmppChannel("127.0.0.1", port, "loa", "pw", _text, response_timeout_s=0.1)
        try:
            outcome = await channel.send(_task(1))
            assert channel.binds == 1 and channel._session is not None
            assert not channel._session.closed  # a late answer is not a broken session
        finally:
            await channel.close()
    assert (outcome.status, outcome.reason) == ("retry", "timeout")


async def test_nothing_listening_is_a_connection_retry() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    channel = SmppChannel("127.0.0.1", port, "loa", "pw", _text)
    try:
        outcome = await channel.send(_task(1))
    finally:
        await channel.close()
    assert (outcome.status, outcome.reason) == ("retry", "connection")
