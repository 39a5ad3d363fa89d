"""SMS over SMPP 3.4: the ``smpp`` channel, its PDU codec and its text encoder.

Data flow: send task (channel ``sms``) -> [delivery worker] -> :class:`SmppChannel` ->
``submit_sm`` over one TCP session bound to the operator's SMSC -> ``submit_sm_resp`` -> the
task's :class:`~streams.delivery.policy.Outcome`.

- **Codec** (pure, unit-tested against byte vectors of the SMPP 3.4 specification): a PDU is a
  16-byte header (``command_length``, ``command_id``, ``command_status``, ``sequence_number``,
  big-endian) and a body of C-strings, single octets and TLVs. Only what an ESME that sends
  needs: bind_transmitter/transceiver, submit_sm, deliver_sm(_resp), enquire_link(_resp),
  unbind(_resp), generic_nack.
- **Encoder** (pure, :func:`encode_sms`): text that fits GSM 03.38 (plain ASCII, mostly) goes
  as the SMSC default alphabet (``data_coding`` 0, one septet per octet, unpacked as SMPP
  carries it): 160 characters in one SMS, 153 per segment of a long one. Anything else,
  Vietnamese above all, goes as UCS-2 (``data_coding`` 8, UTF-16BE, normalised to NFC first
  so each accented letter is one unit): 70 per SMS, 67 per segment. A long message is split
  into segments with a concatenation UDH (``05 00 03 ref total seq``, ``esm_class`` UDHI
  0x40); an escape pair or a surrogate pair is never split. Text longer than
  ``max_segments`` segments is cut at the last whole word that fits and ends with ``…``.
- **Channel** (:class:`SmppChannel`): one session, bound as transmitter (or transceiver to get
  delivery receipts), with at most ``window`` submit_sm awaiting their response, sequence
  numbers 1..2^31-1, an ``enquire_link`` every ``enquire_link_s`` (no answer in
  ``response_timeout_s``: the session is dropped), reconnect on the next call after a drop,
  with exponential back-off between failed connects (a call that finds the back-off running
  returns ``retry``/``connection`` at once: the worker's retry tiers and circuit do the
  waiting, no call blocks on a dead SMSC). Calls in flight when a connection drops end as
  ``retry``/``connection``.

``submit_sm_resp`` status -> outcome: ``ESME_ROK`` delivered (to the SMSC); ``ESME_RTHROTTLED``
and ``ESME_RMSGQFUL`` retry as ``rate_limited`` after ``throttle_pause_s`` (the worker closes
the SMSC endpoint's gate for that long: every call slows down, and a throttle is not a circuit
failure); the permanent errors in :data:`PERMANENT` (invalid destination, bad message
length, bad addressing, ...) fail as ``smpp_<name>`` and the recipient moves to their next
channel; every other status (system error, submit failed, vendor codes) retries with back-off.

Delivery receipts: with ``registered_delivery`` on, each submit_sm asks for an SMSC receipt and
the session is bound as transceiver; a ``deliver_sm`` whose ``esm_class`` says "SMSC delivery
receipt" is answered, counted (:attr:`SmppChannel.receipts`, by ``stat``) and logged at DEBUG.
Loa's receipt for the task is written when the SMSC accepts the message (``submit_sm_resp``),
not when the handset gets it: a handset receipt comes minutes or days later, from whichever
session is bound, and is not tied back to the task.

Why not a library: ``smpplib`` (PyPI) runs blocking sockets in a thread; ``aiosmpplib`` is
asyncio but sends from its own queue (a broker), reports answers through hooks and a
correlator, and has its own throttling and retries. Loa's worker needs ``await send(task) ->
Outcome`` per call, with retries, circuits and Retry-After kept in one place
(:mod:`streams.delivery.retry`, :mod:`streams.delivery.breaker`); the codec an ESME needs is
small, so it is written here and tested against the specification's byte layouts.

Guarantee: at least once to the SMSC. SMPP has no idempotency key: the task's key cannot
travel to the handset, and an SMSC cannot drop a repeat. A call whose ``submit_sm_resp`` was
lost (a dropped connection, a timeout, a worker crash before its commit) is sent again, and
the person gets a second SMS. Repeats are bounded as for every channel (docs/delivery.md); a
long message that fails at segment k repeats segments 1..k-1 with the same concatenation
reference, which many handsets merge. The SMS' ``validity_period`` is the alert's ``expires``
so an SMSC does not deliver a warning that is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.delivery.policy import Outcome

__all__ = [
    "BIND_TRANSCEIVER",
    "BIND_TRANSMITTER",
    "PERMANENT",
    "Pdu",
    "Segment",
    "SmppChannel",
    "bind_body",
    "decode_header",
    "encode_pdu",
    "encode_sms",
    "outcome_of_status",
    "parse_deliver_sm",
    "parse_receipt",
    "submit_sm_body",
]

log = logging.getLogger("loa.deliver.smpp")

HEADER = struct.Struct(">IIII")
GENERIC_NACK = 0x80000000
BIND_TRANSMITTER = 0x00000002
BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000  # a response's command_id is its request's with this bit set
INTERFACE_VERSION = 0x34

ESME_ROK = 0x00
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
#: submit_sm_resp statuses that can never succeed for this message (SMPP 3.4, 5.1.3).
PERMANENT: dict[int, str] = {
    0x01: "invalid_message_length",
    0x02: "invalid_command_length",
    0x03: "invalid_command_id",
    0x0A: "invalid_source_address",
    0x0B: "invalid_destination_address",
    0x0E: "invalid_password",
    0x0F: "invalid_system_id",
    0x33: "invalid_number_of_destinations",
    0x48: "invalid_source_ton",
    0x49: "invalid_source_npi",
    0x50: "invalid_destination_ton",
    0x51: "invalid_destination_npi",
    0x61: "invalid_scheduled_time",
    0x62: "invalid_validity_period",
    0x65: "permanent_application_error",
}

# GSM 03.38 default alphabet (index = septet) and its extension table (ESC 0x1B + septet).
_GSM = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_INDEX = {c: i for i, c in enumerate(_GSM) if c != "\x1b"}
_GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D}
_GSM_EXT |= {"]": 0x3E, "|": 0x40, "€": 0x65}

GSM7, UCS2 = 0x00, 0x08
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}  # (single SMS, one segment of a long one)
UDHI = 0x40


@dataclass(frozen=True, slots=True)
class Pdu:
    """One SMPP PDU as read from the wire."""

    command_id: int
    status: int
    sequence: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Segment:
    """One submit_sm's worth of a message."""

    #: ``data_coding``: 0 (GSM 7-bit, unpacked) or 8 (UCS-2).
    data_coding: int
    #: ``esm_class``: 0x40 (UDHI) when ``short_message`` starts with a concatenation UDH.
    esm_class: int
    short_message: bytes
    #: Characters of the text (septets for GSM 7-bit, UTF-16 units for UCS-2) in it.
    units: int


# ---------------------------------------------------------------- codec (pure)


def encode_pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    """A PDU: header (length includes itself) + body."""
    return HEADER.pack(HEADER.size + len(body), command_id, status, sequence) + body


def decode_header(header: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a 16-byte header."""
    length, command_id, status, sequence = HEADER.unpack(header)
    return length, command_id, status, sequence


def _cstr(value: str, max_len: int) -> bytes:
    raw = value.encode("ascii")
    if len(raw) >= max_len:  # max_len counts the NUL
        raise ValueError(f"{value!r}: at most {max_len - 1} characters in this SMPP field")
    return raw + b"\0"


def bind_body(
    system_id: str,
    password: str,
    *,
    system_type: str = "",
    addr_ton: int = 0,
    addr_npi: int = 0,
    address_range: str = "",
) -> bytes:
    """Body of bind_transmitter / bind_transceiver (SMPP 3.4, 4.1.1)."""
    return (
        _cstr(system_id, 16)
        + _cstr(password, 9)
        + _cstr(system_type, 13)
        + bytes((INTERFACE_VERSION, addr_ton, addr_npi))
        + _cstr(address_range, 41)
    )


def validity_period(expires: float | None) -> str:
    """SMPP absolute time ``YYMMDDhhmmsstnnp`` in UTC (``""``: the SMSC's default)."""
    if expires is None:
        return ""
    at = datetime.fromtimestamp(expires, UTC)
    return at.strftime("%y%m%d%H%M%S") + "000+"


def submit_sm_body(
    source: str,
    destination: str,
    segment: Segment,
    *,
    source_ton: int = 5,
    source_npi: int = 0,
    dest_ton: int = 1,
    dest_npi: int = 1,
    registered_delivery: int = 0,
    validity: str = "",
) -> bytes:
    """Body of submit_sm (SMPP 3.4, 4.4.1); ``short_message`` at most 254 octets."""
    if len(segment.short_message) > 254:
        raise ValueError("short_message is at most 254 octets")
    return (
        _cstr("", 6)  # service_type: SMSC default
        + bytes((source_ton, source_npi))
        + _cstr(source, 21)
        + bytes((dest_ton, dest_npi))
        + _cstr(destination, 21)
        + bytes((segment.esm_class, 0, 0))  # esm_class, protocol_id, priority_flag
        + _cstr("", 17)  # schedule_delivery_time: now
        + _cstr(validity, 17)
        + bytes((registered_delivery, 0, segment.data_coding, 0))
        + bytes((len(segment.short_message),))
        + segment.short_message
    )


def _read_cstr(body: bytes, at: int) -> tuple[str, int]:
    end = body.index(b"\0", at)
    return body[at:end].decode("latin-1"), end + 1


def parse_deliver_sm(body: bytes) -> dict[str, Any]:
    """The fields of a deliver_sm body Loa uses (source, destination, esm_class, data_coding,
    short_message)."""
    _, at = _read_cstr(body, 0)  # service_type
    at += 2
    source, at = _read_cstr(body, at)
    at += 2
    destination, at = _read_cstr(body, at)
    esm_class = body[at]
    at += 3
    _, at = _read_cstr(body, at)  # schedule_delivery_time
    _, at = _read_cstr(body, at)  # validity_period
    data_coding = body[at + 2]
    length = body[at + 4]
    message = body[at + 5 : at + 5 + length]
    return {
        "source": source,
        "destination": destination,
        "esm_class": esm_class,
        "data_coding": data_coding,
        "short_message": message,
    }


def is_receipt(esm_class: int) -> bool:
    """``esm_class`` message type "SMSC delivery receipt" (bits 2-5 = 0001)."""
    return esm_class & 0x3C == 0x04


def parse_receipt(text: bytes) -> dict[str, str]:
    """``id:`` and ``stat:`` (and the other ``key:value`` words) of a receipt's text
    (SMPP 3.4 appendix B; its format is by convention, not mandatory)."""
    fields: dict[str, str] = {}
    for word in text.decode("latin-1").split(" "):
        key, sep, value = word.partition(":")
        if sep and key and key not in fields:
            fields[key.lower()] = value
    return fields


def outcome_of_status(status: int, throttle_pause_s: float) -> Outcome:
    """What a submit_sm_resp's ``command_status`` means for the task."""
    if status == ESME_ROK:
        return Outcome.delivered()
    if status in (ESME_RTHROTTLED, ESME_RMSGQFUL):
        # "rate_limited": the worker gates the endpoint for after_s and does not count it
        # as a circuit failure; the SMSC is up and asking us to slow down.
        return Outcome.retry("rate_limited", throttle_pause_s)
    if status in PERMANENT:
        return Outcome.failed(f"smpp_{PERMANENT[status]}")
    return Outcome.retry(f"smpp_0x{status:02x}")


# ---------------------------------------------------------------- encoder (pure)


def _gsm_septets(text: str) -> list[list[int]] | None:
    """Septets per character (an extension character is ESC + septet), or None when the
    text does not fit the GSM default alphabet."""
    out: list[list[int]] = []
    for c in text:
        if c in _GSM_INDEX:
            out.append([_GSM_INDEX[c]])
        elif c in _GSM_EXT:
            out.append([0x1B, _GSM_EXT[c]])
        else:
            return None
    return out


def _ucs2_units(text: str) -> list[bytes]:
    """UTF-16BE code units per character (a surrogate pair stays together)."""
    return [c.encode("utf-16-be") for c in text]


def _cut(chars: list[Any], size: Callable[[Any], int], room: int) -> list[Any]:
    """The longest prefix of ``chars`` within ``room`` units, ended at its last space when it
    has one (a word is not cut in half)."""
    kept: list[Any] = []
    used = 0
    for c in chars:
        if used + size(c) > room:
            break
        kept.append(c)
        used += size(c)
    spaces = [i for i, c in enumerate(kept) if c in ([0x20], b"\x00 ")]
    return kept[: spaces[-1]] if spaces and spaces[-1] > 0 else kept


def _split(units: list[Any], size: Callable[[Any], int], limit: int) -> list[list[Any]]:
    parts: list[list[Any]] = [[]]
    used = 0
    for u in units:
        if used + size(u) > limit:
            parts.append([])
            used = 0
        parts[-1].append(u)
        used += size(u)
    return parts


def encode_sms(text: str, *, reference: int = 0, max_segments: int = 6) -> list[Segment]:
    """``text`` as the submit_sm segments of one SMS (see the module docstring for the rules).

    ``reference``: the concatenation reference (0-255) of a long message; derive it from the
    task's key so a repeat carries the same one.
    """
    if not 1 <= max_segments <= 255:
        raise ValueError("max_segments is 1..255")
    text = unicodedata.normalize("NFC", text)
    septets = _gsm_septets(text)
    ellipsis: list[Any]
    if septets is not None:
        chars: list[Any] = septets
        coding, ellipsis = GSM7, [[0x2E], [0x2E], [0x2E]]
        size: Callable[[Any], int] = len
    else:
        chars = _ucs2_units(text)
        coding, ellipsis = UCS2, ["…".encode("utf-16-be")]
        size = lambda unit: len(unit) // 2  # noqa: E731 - one UTF-16 unit is 2 octets
    single, per_segment = _LIMITS[coding]
    capacity = single if max_segments == 1 else per_segment * max_segments
    if sum(size(c) for c in chars) > capacity:
        chars = _cut(chars, size, capacity - sum(size(e) for e in ellipsis)) + ellipsis
    total = sum(size(c) for c in chars)
    if total <= single:
        return [Segment(coding, 0, _join(chars, coding), total)]
    parts = _split(chars, size, per_segment)
    ref = reference & 0xFF
    return [
        Segment(
            coding,
            UDHI,
            bytes((0x05, 0x00, 0x03, ref, len(parts), n)) + _join(part, coding),
            sum(size(c) for c in part),
        )
        for n, part in enumerate(parts, start=1)
    ]


def _join(chars: list[Any], coding: int) -> bytes:
    if coding == GSM7:
        return bytes(s for c in chars for s in c)
    return b"".join(chars)


def decode_segment(segment: bytes, data_coding: int, esm_class: int) -> tuple[str, bytes]:
    """(text, UDH) of a short_message (tests and receipts read SMSC logs with it)."""
    udh = b""
    if esm_class & UDHI:
        udh, segment = segment[: segment[0] + 1], segment[segment[0] + 1 :]
    if data_coding == UCS2:
        return segment.decode("utf-16-be"), udh
    out, escape = [], False
    ext = {v: k for k, v in _GSM_EXT.items()}
    for s in segment:
        if escape:
            out.append(ext.get(s, " "))
            escape = False
        elif s == 0x1B:
            escape = True
        else:
            out.append(_GSM[s])
    return "".join(out), udh


def reference_of(key: str) -> int:
    """A concatenation reference derived from the task's idempotency key (stable on repeats)."""
    return zlib.crc32(key.encode("utf-8")) & 0xFF


# ---------------------------------------------------------------- the channel (I/O)


class ConnectionLost(Exception):
    """The SMSC session ended while a request waited for its response (retriable)."""


#: Renders an SMS's text for a task (None: the content is not known yet; the task retries).
TextOf = Callable[[dict[str, Any]], Awaitable[str | None]]


class _Session:
    """One bound TCP session: writes requests, matches responses by sequence number."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_deliver: Callable[[bytes], None],
    ) -> None:
        self.reader, self.writer, self.on_deliver = reader, writer, on_deliver
        self.pending: dict[int, asyncio.Future[Pdu]] = {}
        self.closed = False
        self._seq = 0
        self.tasks: list[asyncio.Task[None]] = []

    def next_sequence(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    async def request(self, command_id: int, body: bytes, timeout_s: float) -> Pdu:
        if self.closed:
            raise ConnectionLost("session closed")
        seq = self.next_sequence()
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.pending[seq] = future
        try:
            self.writer.write(encode_pdu(command_id, seq, body))
            await self.writer.drain()
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:  # an OSError subclass: the session itself is fine, keep it
            raise
        except OSError as exc:
            self.close()
            raise ConnectionLost(str(exc)) from None
        finally:
            self.pending.pop(seq, None)

    async def read_loop(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(HEADER.size)
                length, command_id, status, seq = decode_header(header)
                if not HEADER.size <= length <= 65536:
                    raise ConnectionLost(f"bad command_length {length}")
                body = await self.reader.readexactly(length - HEADER.size)
                self._dispatch(Pdu(command_id, status, seq, body))
        except (asyncio.IncompleteReadError, OSError, ConnectionError, ConnectionLost):
            pass
        finally:
            self.close()

    def _dispatch(self, pdu: Pdu) -> None:
        if pdu.command_id & RESP:
            future = self.pending.get(pdu.sequence)
            if future is not None and not future.done():
                future.set_result(pdu)
            return
        if pdu.command_id == ENQUIRE_LINK:
            self.writer.write(encode_pdu(ENQUIRE_LINK | RESP, pdu.sequence))
        elif pdu.command_id == DELIVER_SM:
            self.writer.write(encode_pdu(DELIVER_SM | RESP, pdu.sequence, b"\0"))
            self.on_deliver(pdu.body)
        elif pdu.command_id == UNBIND:  # the SMSC is going away: answer, then close
            self.writer.write(encode_pdu(UNBIND | RESP, pdu.sequence))
            self.close()
        else:
            self.writer.write(encode_pdu(GENERIC_NACK, pdu.sequence, status=0x03))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("connection dropped"))
        self.writer.close()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class SmppChannel:
    """Send each task as an SMS through an SMSC over SMPP 3.4 (see the module docstring)."""

    name = "smpp"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        text_of: TextOf,
        *,
        source_addr: str = "LOA",
        address_template: str = "{recipient_id}",
        window: int = 10,
        enquire_link_s: float = 30.0,
        response_timeout_s: float = 10.0,
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
        throttle_pause_s: float = 1.0,
        registered_delivery: bool = False,
        max_segments: int = 6,
    ) -> None:
        self.host, self.port = host, port
        self.endpoint = f"smpp://{host}:{port}"
        self.system_id, self.password, self.text_of = system_id, password, text_of
        self.source_addr, self.address_template = source_addr, address_template
        self.enquire_link_s, self.response_timeout_s = enquire_link_s, response_timeout_s
        self.reconnect_base_s, self.reconnect_cap_s = reconnect_base_s, reconnect_cap_s
        self.throttle_pause_s, self.max_segments = throttle_pause_s, max_segments
        self.registered_delivery = registered_delivery
        self._window = asyncio.Semaphore(window)
        self._session: _Session | None = None
        self._connecting = asyncio.Lock()
        self._failed_connects = 0
        self._next_connect_at = 0.0
        #: Binds made (the first and every reconnect) and receipts seen, by ``stat``.
        self.binds = 0
        self.receipts: Counter[str] = Counter()

    def address_of(self, task: dict[str, Any]) -> str:
        """The destination MSISDN of a task: ``address_template`` rendered with its fields."""
        return self.address_template.format(recipient_id=task["recipient_id"])

    async def send(self, task: dict[str, Any]) -> Outcome:
        text = await self.text_of(task)
        if text is None:
            return Outcome.retry("no_content")
        expires = task.get("expires")
        segments = encode_sms(
            text,
            reference=reference_of(str(task["idempotency_key"])),
            max_segments=self.max_segments,
        )
        destination = self.address_of(task)
        for segment in segments:
            body = submit_sm_body(
                self.source_addr,
                destination,
                segment,
                registered_delivery=1 if self.registered_delivery else 0,
                validity=validity_period(float(expires) if expires is not None else None),
            )
            outcome = await self._submit(body)
            if outcome.status != "delivered":
                return outcome
        return Outcome.delivered()

    async def _submit(self, body: bytes) -> Outcome:
        async with self._window:  # at most `window` submit_sm awaiting their response
            session = await self._connected()
            if session is None:
                return Outcome.retry("connection")
            try:
                resp = await session.request(SUBMIT_SM, body, self.response_timeout_s)
            except ConnectionLost:
                return Outcome.retry("connection")
            except TimeoutError:
                return Outcome.retry("timeout")
        if resp.command_id == GENERIC_NACK:
            return Outcome.retry(f"smpp_nack_0x{resp.status:02x}")
        return outcome_of_status(resp.status, self.throttle_pause_s)

    async def _connected(self) -> _Session | None:
        session = self._session
        if session is not None and not session.closed:
            return session
        async with self._connecting:
            session = self._session
            if session is not None and not session.closed:
                return session
            if session is not None:  # a dropped session: its reader and keepalive end here
                self._session = None
                await asyncio.gather(*session.tasks, return_exceptions=True)
            if time.monotonic() < self._next_connect_at:
                return None  # back-off after a failed connect: the worker's tiers wait
            try:
                self._session = await asyncio.wait_for(self._bind(), self.response_timeout_s)
                self._failed_connects = 0
                return self._session
            except (OSError, ConnectionLost, TimeoutError) as exc:
                self._failed_connects += 1
                delay = min(
                    self.reconnect_cap_s, self.reconnect_base_s * 2 ** (self._failed_connects - 1)
                )
                self._next_connect_at = time.monotonic() + delay
                log.warning(
                    "SMSC %s: bind failed (%s); next try in %.1fs", self.endpoint, exc, delay
                )
                return None

    async def _bind(self) -> _Session:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        session = _Session(reader, writer, self._on_deliver)
        session.tasks.append(asyncio.create_task(session.read_loop()))
        command = BIND_TRANSCEIVER if self.registered_delivery else BIND_TRANSMITTER
        try:
            resp = await session.request(
                command, bind_body(self.system_id, self.password), self.response_timeout_s
            )
        except BaseException:
            session.close()
            raise
        if resp.status != ESME_ROK:
            session.close()
            raise ConnectionLost(f"bind refused with status 0x{resp.status:02x}")
        session.tasks.append(asyncio.create_task(self._keepalive(session)))
        self.binds += 1
        log.info("SMSC %s: bound (bind %d)", self.endpoint, self.binds)
        return session

    async def _keepalive(self, session: _Session) -> None:
        """enquire_link every ``enquire_link_s``; no answer: drop the session (the next call
        reconnects)."""
        while not session.closed:
            await asyncio.sleep(self.enquire_link_s)
            try:
                await session.request(ENQUIRE_LINK, b"", self.response_timeout_s)
            except (ConnectionLost, TimeoutError):
                log.warning("SMSC %s: enquire_link unanswered; dropping the session", self.endpoint)
                session.close()

    def _on_deliver(self, body: bytes) -> None:
        try:
            fields = parse_deliver_sm(body)
        except (ValueError, IndexError):
            self.receipts["unreadable"] += 1
            return
        if not is_receipt(fields["esm_class"]):
            return  # a mobile-originated message: Loa sends, it does not take replies
        receipt = parse_receipt(fields["short_message"])
        self.receipts[receipt.get("stat", "unknown")] += 1
        log.debug("SMSC receipt for message %s: %s", receipt.get("id"), receipt.get("stat"))

    async def close(self) -> None:
        if self.receipts:
            log.info("SMSC %s: delivery receipts by stat: %s", self.endpoint, dict(self.receipts))
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        with contextlib.suppress(ConnectionLost, TimeoutError, OSError):
            await session.request(UNBIND, b"", min(self.response_timeout_s, 2.0))
        session.close()
        await asyncio.gather(*session.tasks, return_exceptions=True)
