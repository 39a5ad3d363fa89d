"""Drafts kept on the compacted topic ``<prefix>.console.drafts`` (key = draft id), so a
console restart keeps every draft, its approval state and the decision on what it sent.

Where it sits: under the console's handlers. A record is a whole DraftRecord (the contract's
Draft plus ``id``, ``state``, ``agency``, ``author``, ``approver``, times, ``alert_id``,
``decision``, ``cap``...). :meth:`DraftStore.put` returns once the broker acknowledged the write
and the console's own replica applied it, so the next read sees it.

Isolation: every read takes the asking user's agency and answers None for another agency's
record, so a handler cannot forget the check.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafkaio.replica import CompactedReplica
from streams.settings.model import Settings

__all__ = ["DraftStore"]

Record = dict[str, Any]
_WAIT_S = 10.0


def _decode(key: bytes, value: bytes) -> Record:
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("id") != key.decode():
        raise ValueError("not a draft record")
    return doc


class DraftStore:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._replica: CompactedReplica[Record] = CompactedReplica(
            settings, settings.console_drafts_topic, partitions=1, decode=_decode, name="drafts"
        )

    async def start(self) -> None:
        await self._replica.start()

    async def stop(self) -> None:
        await self._replica.stop()

    async def ready(self) -> None:
        await self._replica.ready(timeout_s=_WAIT_S)

    async def put(self, producer: AIOKafkaProducer, record: Record) -> Record:
        await producer.send_and_wait(
            self._settings.console_drafts_topic, orjson.dumps(record), key=record["id"].encode()
        )
        await self.ready()
        return record

    def get(self, draft_id: str, agency: str) -> Record | None:
        record = self._replica.items().get(draft_id.encode())
        if record is None or record.get("agency") != agency:
            return None
        return dict(record)

    def of_agency(self, agency: str) -> list[Record]:
        """The agency's records, newest first."""
        found = [dict(r) for r in self._replica.items().values() if r.get("agency") == agency]
        return sorted(found, key=lambda r: str(r.get("updated_at", "")), reverse=True)

    def sent_of_alert(self, alert_id: str, agency: str) -> list[Record]:
        """The agency's sent records of lineage ``alert_id``, newest first."""
        return [
            r
            for r in self.of_agency(agency)
            if r.get("state") == "sent" and r.get("alert_id") == alert_id
        ]
