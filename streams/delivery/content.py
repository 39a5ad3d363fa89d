"""What a message says: an alert's text for the channels that carry text (smpp, push).

Data flow: ``loa.alerts.accepted`` (compacted, key alert_id: the normalized alert with its
``infos``) -> [this, inside a delivery worker] -> the SMS text or push notification of a send
task. A send task names its alert (``alert_id``, ``version``) and the recipient's ``language``
but carries no text (one copy per recipient would be millions of copies); the channel looks
the text up here.

- :func:`message_of` (pure): the info in the task's language (else the alert's first info);
  the title is its ``headline``, the body its ``instruction`` (what to do) or else its
  ``description``. An SMS is ``title: body``.
- :class:`AlertContent`: a cache of accepted alerts filled by reading the accepted topic to its
  end (read_committed) when a task names a version it has not seen; reads start at most once
  per ``refresh_s`` (a miss just after a read waits for the next one) and every miss waiting
  when a read starts shares it. The topic is compacted and holds one record
  per lineage, so a read is small. A task whose version is not there yet gets ``None`` and the
  channel answers ``retry`` (``no_content``): the accepted record is written before the
  fan-out order, so this is a lag, not a loss.

Guarantee: the text sent is the accepted alert's own for that version; nothing is invented.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from streams.settings.model import Settings

__all__ = ["AlertContent", "Message", "message_of"]


@dataclass(frozen=True, slots=True)
class Message:
    """The words of one alert version for one recipient."""

    title: str
    body: str

    @property
    def sms(self) -> str:
        return f"{self.title}: {self.body}" if self.body else self.title


def message_of(infos: list[dict[str, Any]], language: str) -> Message | None:
    """The message in ``language`` (else the first info's), None without infos."""
    if not infos:
        return None
    chosen = next((i for i in infos if str(i.get("language", "")).startswith(language)), infos[0])
    body = chosen.get("instruction") or chosen.get("description") or ""
    return Message(str(chosen.get("headline") or chosen.get("event") or ""), str(body))


class AlertContent:
    """Accepted alerts' infos by (alert_id, version), read from the accepted topic on a miss."""

    def __init__(self, settings: Settings, *, refresh_s: float = 1.0) -> None:
        self.settings, self.refresh_s = settings, refresh_s
        self._infos: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self._read_at = float("-inf")

    def put(self, alert_id: str, version: int, infos: list[dict[str, Any]]) -> None:
        self._infos[(alert_id, version)] = infos

    async def message(self, task: dict[str, Any]) -> Message | None:
        key = (str(task["alert_id"]), int(task["version"]))
        if key not in self._infos:
            await self._refresh()
        infos = self._infos.get(key)
        return None if infos is None else message_of(infos, str(task.get("language", "")))

    async def sms_text(self, task: dict[str, Any]) -> str | None:
        message = await self.message(task)
        return None if message is None else message.sms

    async def _refresh(self) -> None:
        read_at = time.monotonic()
        async with self._lock:
            if self._read_at >= read_at:
                return  # a read that started after this miss covered it
            wait = self._read_at + self.refresh_s - time.monotonic()
            if wait > 0:  # one read per refresh_s at most: a burst of misses shares the next
                await asyncio.sleep(wait)
            self._read_at = time.monotonic()
            from streams.kafkaio.clients import read_to_end  # Kafka I/O only when used

            async for record in read_to_end(self.settings, self.settings.accepted_topic):
                if record.value is None:
                    continue
                doc = orjson.loads(record.value)
                if "alert_id" in doc and "version" in doc:
                    self.put(str(doc["alert_id"]), int(doc["version"]), doc.get("infos") or [])
