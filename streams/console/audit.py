"""The console's audit trail: one JSON record per action on ``<prefix>.console.audit``.

Where it sits: written by the console for every action (login ok and failed, logout, draft
create and update, check, preview, submit, approve, return, send, update, cancel), read by
``loa audit``. The topic is append-only and never compacted or expired (``retention.ms=-1``).

Guarantee: an action's answer is sent only after its audit record was acknowledged by the
broker (``acks=all``): an action the console answered is in the trail. A failed login is
recorded with the name tried, never the password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafkaio.clients import read_to_end
from streams.settings.model import Settings

__all__ = ["AuditEvent", "read_audit", "write_audit"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One action: who, for which agency, on which draft or alert, with what outcome."""

    action: str
    user: str
    agency: str
    #: ``ok``, ``refused`` (with ``detail``), ``accepted``, ``rejected``, ``duplicate``...
    outcome: str
    draft_id: str = ""
    alert_id: str = ""
    #: client address (logins), the refusal's code, the return reason...
    detail: str = ""
    time: str = ""

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["time"] = self.time or datetime.now(UTC).isoformat(timespec="milliseconds")
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, value: bytes) -> AuditEvent:
        doc: dict[str, Any] = orjson.loads(value)
        return cls(**{f.name: str(doc.get(f.name, "")) for f in fields(cls)})


async def write_audit(producer: AIOKafkaProducer, settings: Settings, event: AuditEvent) -> None:
    """Append ``event`` (keyed by agency, so one agency's trail stays in order)."""
    await producer.send_and_wait(
        settings.console_audit_topic, event.to_json(), key=event.agency.encode()
    )


async def read_audit(settings: Settings, *, agency: str | None = None) -> AsyncIterator[AuditEvent]:
    """The trail from its start (only ``agency``'s actions when given)."""
    async for record in read_to_end(settings, settings.console_audit_topic, partitions=[0]):
        if not record.value:
            continue
        try:
            event = AuditEvent.from_json(record.value)
        except (orjson.JSONDecodeError, TypeError):
            continue  # not an audit record
        if agency is None or event.agency == agency:
            yield event
