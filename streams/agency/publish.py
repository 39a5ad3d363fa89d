"""``loa publish``: one alert file onto ``loa.alerts.inbound``, and ingest's decision on it.

Where it sits: on the agency's side of the inbound topic. The file's bytes are sent unchanged
(signed with the agency's key when one is given), and the decision is read back from
``loa.alerts.accepted`` / ``loa.alerts.rejected`` by the inbound offset, so a re-publish finds its
own ``duplicate`` and a rejection is found even when the file names no sender.

A file that is not an alert at all (empty, not well-formed, over ``LOA_MAX_ALERT_BYTES``,
forbidden XML) is not sent: ingest could only reject it, and a mistyped path (a key file, say)
must not end on a shared topic. Anything that parses is sent and judged by ingest, the one
authority. Exit codes (:data:`EXIT_CODES`, the CLI's table in :mod:`streams.cli.kit`): 0 accepted
(no warnings) or duplicate, 8 accepted with warnings the agency must read (``empty_audience``,
``located_only``, ``partly_outside``, ``reach_unknown``), 1 rejected, 7 not an alert (not sent),
4 no decision came in time (retry later); 0 too for ``--no-wait`` once the record is on the
topic. Kafka refusing or not answering raises (the CLI says so in one line: 4 unreachable, 5 not
authorized).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from streams.errors import ForbiddenXml, MalformedInput, PoisonError, TooLarge
from streams.ingest.cap import detect_format, parse_cap
from streams.ingest.json_alert import decode_json_alert
from streams.ingest.signatures import KeyPair, signature_headers
from streams.settings.model import Settings

__all__ = ["EXIT_CODES", "Outcome", "Published", "publish_file"]


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    #: Not on the topic: the file is not an alert at all (empty, not well-formed, too large).
    NOT_AN_ALERT = "not_an_alert"
    #: On the topic, but no decision was read back in time (no worker running?).
    NO_DECISION = "no_decision"
    #: On the topic; the decision was not waited for (``--no-wait``).
    SENT = "sent"


EXIT_CODES: dict[Outcome, int] = {
    Outcome.ACCEPTED: 0,
    Outcome.DUPLICATE: 0,
    Outcome.REJECTED: 1,
    Outcome.NOT_AN_ALERT: 7,
    Outcome.NO_DECISION: 4,
    Outcome.SENT: 0,
}
#: Accepted, with warnings a person must read (ExitCode.WARNINGS in streams.cli.kit).
WARNINGS_EXIT_CODE = 8
#: How long Kafka may take to accept the record (separate from waiting for the decision).
_SEND_TIMEOUT_S = 60.0
#: Refused before sending: ingest can only say the same, and the bytes may not be an alert.
_NOT_AN_ALERT = (MalformedInput, TooLarge, ForbiddenXml)


@dataclass(frozen=True, slots=True)
class Published:
    outcome: Outcome
    #: The decision record as Loa wrote it (accepted alert, or rejection/duplicate record).
    record: dict[str, Any] | None = None
    #: Offset of the record on the inbound topic, once sent.
    offset: int | None = None
    #: Why it was not sent or not decided, for a person.
    reason: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def decision_warnings(self) -> list[dict[str, str]]:
        """The warnings of an accepted decision (``AcceptedAlert.warnings``)."""
        if self.outcome is not Outcome.ACCEPTED or self.record is None:
            return []
        return list(self.record.get("warnings") or [])

    @property
    def exit_code(self) -> int:
        if self.decision_warnings:
            return WARNINGS_EXIT_CODE
        return EXIT_CODES[self.outcome]

    def json(self) -> str:
        doc: dict[str, Any] = {
            "outcome": self.outcome.value,
            "offset": self.offset,
            "record": self.record,
            "warnings": self.decision_warnings,
            "exit_code": self.exit_code,
        }
        if self.reason:
            doc["reason"] = self.reason
        return orjson.dumps(doc).decode()

    def text(self) -> str:
        r = self.record or {}
        if self.outcome is Outcome.ACCEPTED:
            head = (
                f"accepted {r['message_id']} as {r['alert_id']} version {r['version']}"
                f" priority={r['priority']}"
            )
            reach = r.get("reach")
            if reach:
                channels = ", ".join(f"{k} {v:,}" for k, v in sorted(reach["by_channel"].items()))
                head += f"\n  reaches {reach['total']:,}" + (f" ({channels})" if channels else "")
                if not reach.get("complete", True):
                    head += f" (census of {reach['partitions_counted']}/{reach['partitions']}"
                    head += " partitions)"
            lines = [head]
            for w in self.decision_warnings:
                where = f" {w['pointer']}" if w.get("pointer") else ""
                lines.append(f"  warning {w['code']}{where}: {w['message']}")
            return "\n".join(lines)
        if self.outcome is Outcome.DUPLICATE:
            return f"duplicate: {r['message']}"
        if self.outcome is Outcome.REJECTED:
            head = f"rejected code={r['code']} pointer={r['pointer']}: {r['message']}"
            more = [e["message"] for e in r.get("errors", ())[1:]]
            return "\n".join([head, *(f"  also: {m}" for m in more)])
        if self.outcome is Outcome.SENT:
            return f"sent (offset {self.offset}); not waiting for the decision"
        lead = "not sent" if self.outcome is Outcome.NOT_AN_ALERT else "no decision"
        return f"{lead}: {self.reason}"


async def publish_file(
    settings: Settings, raw: bytes, key: KeyPair | None, *, wait: bool, timeout_s: float
) -> Published:
    """Send ``raw`` (signed with ``key``) and, with ``wait``, read back ingest's decision."""
    try:
        doc = _parse(raw, settings.max_alert_bytes)
    except _NOT_AN_ALERT as exc:
        where = f" at {exc.pointer}" if exc.pointer else ""
        return Published(Outcome.NOT_AN_ALERT, reason=f"{exc.code.value}{where}: {exc.message}")
    sender, identifier = _text(doc, "sender"), _text(doc, "identifier")
    warnings: tuple[str, ...] = ()
    if key is not None and key.agency and sender is not None and key.agency != sender:
        warnings = (f"key of {key.agency}, alert sender is {sender}",)
    headers = list(signature_headers(key, raw)) if key is not None else []
    # Kafka refusing or not answering raises: the CLI reports it as one line with its exit
    # code (4 unreachable, 5 not authorized; streams.cli.kit), the same as every other command
    async with asyncio.timeout(_SEND_TIMEOUT_S):
        offset = await _send(settings, raw, headers)
    if not wait:
        return Published(Outcome.SENT, offset=offset, warnings=warnings)
    from streams.receipts.observe import wait_decision

    try:
        outcome, record = await wait_decision(
            settings, sender or "", identifier or "", offset=offset, timeout_s=timeout_s
        )
    except TimeoutError:
        reason = (
            f"none within {timeout_s:g} s of sending it (offset {offset}): is a worker running?"
        )
        return Published(Outcome.NO_DECISION, offset=offset, reason=reason, warnings=warnings)
    return Published(Outcome(outcome), record, offset, warnings=warnings)


def _parse(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise TooLarge(f"the file is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        return (
            parse_cap(raw, max_bytes=max_bytes)
            if detect_format(raw) == "xml"
            else (decode_json_alert(raw))
        )
    except _NOT_AN_ALERT:
        raise
    except PoisonError:  # parses, but breaks a CAP rule: ingest says which, on the record
        return {}


def _text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


async def _send(settings: Settings, raw: bytes, headers: list[tuple[str, bytes]]) -> int:
    from streams.agency.inbound import send_inbound
    from streams.kafkaio.clients import create_topics, make_producer

    await create_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:  # the same record as the HTTP gateway writes
        return await send_inbound(producer, settings, raw, headers)
    finally:
        await producer.stop()
