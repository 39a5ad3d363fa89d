"""A small compacted topic held in memory by every worker: key -> decoded value, kept current.

Where it sits: beside the agents, for reference data every worker needs whole (the agency
registry). The compacted topic *is* the store: :class:`CompactedReplica` replays every
partition from offset 0 with its own consumer (manual assignment, no consumer group, no
committed offsets) and then follows it, so a change written by anyone is applied by every
worker without a restart, and a restarted worker holds exactly what the topic holds.

Guarantee: :meth:`CompactedReplica.ready` returns only once every record up to the topic's end
offsets *as of the call* has been applied, so a reader that wrote a change and then calls
``ready()`` sees it. A record whose value ``decode`` refuses removes its key (fail closed: a
broken record must not leave a stale grant in force) and is counted in ``bad_records``. A null
value (tombstone) removes its key.

The directory (``streams/directory/service.py``) follows the same replay pattern but owns a
subset of partitions as columnar indexes; this helper is for whole, small, keyed tables.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafkaio.clients import make_reader, start_all
from streams.retrying import RetryPolicy
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = ["CompactedReplica", "ReplicaNotReady"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A failed fetch is tried again within a second (ingest waits on this replica).
FETCH_RETRY = RetryPolicy(base_s=1.0, cap_s=1.0)


class ReplicaNotReady(TimeoutError):
    """The replica did not reach the end offsets asked for in time (callers map it)."""


class CompactedReplica(Generic[T]):
    """Follows every partition of ``topic`` and keeps ``key -> decode(key, value)``."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        partitions: int,
        decode: Callable[[bytes, bytes], T],
        name: str,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._decode = decode
        self._name = name
        self._values: dict[bytes, T] = {}
        self._errors: dict[bytes, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        # End offsets come from a client of their own: on the follower's connection a
        # ListOffsets request queues behind the long-polling fetch.
        self._offsets: AIOKafkaConsumer | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        #: Bumped after each applied fetch batch; readers cache derived views on it.
        self.version = 0
        self.bad_records = 0

    async def start(self) -> None:
        app_id = self._settings.app_id
        self._consumer = make_reader(
            self._settings, fetch_max_wait_ms=100, client_id=f"{app_id}-{self._name}"
        )
        self._offsets = make_reader(self._settings, client_id=f"{app_id}-{self._name}-offsets")
        await start_all(self._consumer, self._offsets)
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        self._task = asyncio.create_task(self._run(), name=f"loa-{self._name}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for client in (self._consumer, self._offsets):
            if client is not None:
                await client.stop()
        self._consumer = self._offsets = None

    def items(self) -> Mapping[bytes, T]:
        """The current values (a read-only view: it changes as the topic does)."""
        return MappingProxyType(self._values)

    def errors(self) -> Mapping[bytes, str]:
        """Keys whose latest record was refused by ``decode``, with the reason."""
        return MappingProxyType(self._errors)

    async def ready(self, *, timeout_s: float) -> None:
        """Wait until every record up to the end offsets as of now is applied.

        Raises :class:`ReplicaNotReady` after ``timeout_s``.
        """
        assert self._offsets is not None, "replica not started"
        end: dict[TopicPartition, int] = {}
        try:
            async with asyncio.timeout(timeout_s):
                end = await self._offsets.end_offsets(self._tps)
                async with self._changed:
                    while not await self._caught_up(end):
                        await self._changed.wait()
        except TimeoutError:
            where = f"offsets {[end[tp] for tp in self._tps]}" if end else "its end offsets"
            raise ReplicaNotReady(
                f"{self._name} did not reach {self._topic} {where} in {timeout_s} s"
            ) from None

    async def _caught_up(self, end: Mapping[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp in self._tps:
            # The position moves when ``getmany`` hands records out, and ``_run`` applies them
            # before it next awaits: position >= end means applied.
            if await self._consumer.position(tp) < end[tp]:
                return False
        return True

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        fetch = partial(consumer.getmany, *self._tps, timeout_ms=200, max_records=10_000)
        while True:
            # a broker hiccup must not end the replica: the fetch is retried
            data = await FETCH_RETRY.run(fetch, what=f"{self._name} fetch", log=log)
            for records in data.values():
                for record in records:
                    self._apply(record.key, record.value)
            self.version += 1
            async with self._changed:
                self._changed.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            self.bad_records += 1
            log.warning("%s: record without a key ignored", self._name)
            return
        if value is None:
            self._values.pop(key, None)
            self._errors.pop(key, None)
            return
        try:
            decoded = self._decode(key, value)
        except Exception as exc:  # any refusal, even a bug, must not stop the replica
            self.bad_records += 1
            self._values.pop(key, None)
            self._errors[key] = str(exc)
            log.warning("%s: record %r refused (%s); key removed", self._name, key, exc)
            return
        self._values[key] = decoded
        self._errors.pop(key, None)
