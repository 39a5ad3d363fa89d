"""The gateway's pure rules: which content types it takes, per-agency rate limits, and how an
ingest decision becomes an HTTP answer. No I/O, no clock (times are passed in)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

__all__ = [
    "CONTENT_TYPES",
    "Answer",
    "Outcome",
    "TokenBuckets",
    "decision_answer",
    "error_answer",
    "pending_answer",
    "status_path",
]

#: Media types a ``POST /v1/alerts`` body may declare. Ingest tells CAP from JSON by the body's
#: first character, as on Kafka; the type only has to be one of these.
CONTENT_TYPES = frozenset(
    {"application/cap+xml", "application/xml", "text/xml", "application/json"}
)


class Outcome(StrEnum):
    """The ``outcome`` field of every gateway answer."""

    ACCEPTED = "accepted"  # 201: ingest accepted it
    DUPLICATE = "duplicate"  # 200: a re-publish of an accepted message (nothing sent again)
    REJECTED = "rejected"  # 422: ingest rejected it (code, pointer, message)
    PENDING = "pending"  # 202: written, no decision within the timeout: follow status_url
    REFUSED = "refused"  # 4xx/5xx before Kafka: nothing was written


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP status and its JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def status_path(alert_id: str, inbound_offset: int | None = None) -> str:
    """``/v1/alerts/<alert id, percent-encoded>`` (``?inbound_offset=`` to ask for a decision)."""
    path = f"/v1/alerts/{quote(alert_id, safe='')}"
    return path if inbound_offset is None else f"{path}?inbound_offset={inbound_offset}"


def decision_answer(outcome: str, record: dict[str, Any], inbound_offset: int) -> Answer:
    """The answer for ingest's decision (``streams.receipts.observe`` shape: outcome and its
    record)."""
    if outcome == Outcome.ACCEPTED:
        path = status_path(str(record["alert_id"]))
        body = {
            "outcome": Outcome.ACCEPTED.value,
            "inbound_offset": inbound_offset,
            "message_id": record["message_id"],
            "alert_id": record["alert_id"],
            "version": record["version"],
            "priority": record["priority"],
            "status_url": path,
            "reach": record.get("reach"),
            "warnings": list(record.get("warnings") or ()),
        }
        return Answer(201, body, {"Location": path})
    ids = {"sender": record.get("sender"), "identifier": record.get("identifier")}
    if outcome == Outcome.DUPLICATE:
        message_id = f"{ids['sender']}/{ids['identifier']}"
        body = {
            "outcome": Outcome.DUPLICATE.value,
            "inbound_offset": inbound_offset,
            "message_id": message_id,
            "message": record.get("message", ""),
        }
        return Answer(200, body)
    body = {
        "outcome": Outcome.REJECTED.value,
        "inbound_offset": inbound_offset,
        "code": record.get("code"),
        "pointer": record.get("pointer", ""),
        "message": record.get("message", ""),
        **ids,
    }
    return Answer(422, body)


def pending_answer(inbound_offset: int, alert_id: str) -> Answer:
    """202: written to Kafka, decision not known yet; the link asks for it by offset."""
    path = status_path(alert_id, inbound_offset)
    body = {"outcome": Outcome.PENDING.value, "inbound_offset": inbound_offset, "status_url": path}
    return Answer(202, body, {"Location": path})


def error_answer(status: int, error: str, message: str, **headers: str) -> Answer:
    """A refusal before anything was written (``outcome: refused``)."""
    body = {"outcome": Outcome.REFUSED.value, "error": error, "message": message}
    return Answer(status, body, dict(headers))


@dataclass(slots=True)
class TokenBuckets:
    """One token bucket per key (the agency a body names), ``rate`` tokens/s up to ``burst``.

    At most ``max_keys`` buckets are kept (least recently used dropped): a flood of made-up
    senders costs bounded memory; a dropped bucket comes back full, which only errs toward
    letting an alert through.
    """

    rate: float
    burst: int
    max_keys: int = 10_000
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def take(self, key: str, now: float) -> float:
        """0.0 if ``key`` may go now (a token is taken), else the seconds until it may."""
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(now - last, 0.0) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
