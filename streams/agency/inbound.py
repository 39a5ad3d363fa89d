"""Writing one alert to ``loa.alerts.inbound`` as an agency does: the record value is the
alert's bytes exactly as the agency made them (what Loa's Ed25519 signature and an XML-DSig
signature cover) and the headers carry Loa's signature, if any.

Where it sits: before ingest, on the publisher's side. ``loa publish`` (a file) and
``loa gateway`` (an HTTP body) both write through :func:`send_inbound`, so the two doors produce
the same record. Guarantee: :func:`send_inbound` returns only once the broker acknowledged the
record (``acks=all``, idempotent producer); its offset names the record in ingest's decision
(``inbound_offset`` of an accepted alert, ``source.offset`` of a rejection or duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer

from streams.ingest.cap import detect_format, parse_cap
from streams.settings.model import Settings

__all__ = ["alert_ids", "send_inbound"]


def alert_ids(raw: bytes, max_bytes: int) -> tuple[str, str] | None:
    """``(sender, identifier)`` of a CAP XML or Loa JSON alert, ``None`` if not found.

    A hint for the publisher (whether to wait, whose rate limit): ingest gives the verdict.
    """
    try:
        doc = (
            parse_cap(raw, max_bytes=max_bytes)
            if detect_format(raw) == "xml"
            else orjson.loads(raw)
        )
        sender, identifier = doc["sender"], doc["identifier"]
    except Exception:  # any unreadable body: no hint, ingest will say what is wrong
        return None
    if not isinstance(sender, str) or not isinstance(identifier, str):
        return None
    return sender, identifier


async def send_inbound(
    producer: AIOKafkaProducer,
    settings: Settings,
    raw: bytes,
    headers: Sequence[tuple[str, bytes]] = (),
) -> int:
    """Write ``raw`` (with ``headers``) to the inbound topic; the record's offset."""
    meta = await producer.send_and_wait(settings.inbound_topic, raw, headers=list(headers) or None)
    return int(meta.offset)
