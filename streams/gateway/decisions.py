"""Ingest's decisions as they are committed, by inbound offset: what the gateway answers with.

One read_committed consumer (no group) follows ``loa.alerts.accepted`` and
``loa.alerts.rejected`` from their ends at start, so every record the gateway writes afterwards
has its decision seen here: an accepted alert names its ``inbound_offset``, a rejection or
duplicate its ``source.offset`` (the inbound topic has one partition, so an offset names one
record). Decisions are kept for the last ``keep`` offsets, so one that is committed before its
POST starts waiting, or asked for later through ``GET /v1/alerts/{id}?inbound_offset=``, is
still found.

The follower's task is owned: :meth:`DecisionFollower.stop` cancels and awaits it, and if it
dies every waiter gets its error (the gateway answers 503) instead of waiting for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafkaio.clients import make_reader, topic_specs
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = ["DecisionFollower", "decision_of"]

log = logging.getLogger(__name__)

Decided = tuple[str, dict[str, Any]]


def decision_of(settings: Settings, topic: str, value: bytes | None) -> tuple[int, Decided] | None:
    """``(inbound offset, (outcome, record))`` of one decision record, ``None`` if not one."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if topic == settings.accepted_topic:
        offset = doc.get("inbound_offset")
        return (offset, ("accepted", doc)) if isinstance(offset, int) else None
    source = doc.get("source")
    if not isinstance(source, dict) or source.get("topic") != settings.inbound_topic:
        return None
    offset = source.get("offset")
    if not isinstance(offset, int):
        return None
    return offset, ("duplicate" if doc.get("code") == "duplicate" else "rejected", doc)


class DecisionFollower:
    """Follows the decision topics; :meth:`wait` for the decision on one inbound offset."""

    def __init__(self, settings: Settings, *, keep: int = 10_000) -> None:
        self.settings = settings
        self.keep = keep
        self._decided: OrderedDict[int, Decided] = OrderedDict()
        self._waiters: dict[int, list[asyncio.Future[Decided]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        consumer = make_reader(self.settings)
        await consumer.start()
        counts = {spec.name: spec.num_partitions for spec in topic_specs(self.settings)}
        topics = (self.settings.accepted_topic, self.settings.rejected_topic)
        tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
        consumer.assign(tps)
        # explicit end offsets now, not a lazy "latest" that could skip a decision made later
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="gateway-decisions")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()

    def known(self, offset: int) -> Decided | None:
        return self._decided.get(offset)

    async def wait(self, offset: int, timeout_s: float) -> Decided | None:
        """The decision on inbound ``offset``, or ``None`` if none within ``timeout_s``."""
        if offset in self._decided:
            return self._decided[offset]
        if self._failure is not None or not self.healthy:
            raise RuntimeError(f"decision follower is not running: {self._failure!r}")
        future: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(offset, []).append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(offset, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(offset, None)

    async def _run(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                data = await self._consumer.getmany(timeout_ms=500)
                for tp, records in data.items():
                    for record in records:
                        found = decision_of(self.settings, tp.topic, record.value)
                        if found is not None:
                            self._note(*found)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("gateway decision follower failed")
            self._failure = exc
            for waiters in self._waiters.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(RuntimeError(f"decision follower failed: {exc!r}"))
            raise

    def _note(self, offset: int, decided: Decided) -> None:
        self._decided[offset] = decided
        while len(self._decided) > self.keep:
            self._decided.popitem(last=False)
        for future in self._waiters.get(offset, []):
            if not future.done():
                future.set_result(decided)
