"""Reading owned partitions of one topic from positions the caller keeps.

Where it sits: under the directory's replay and follow (:mod:`streams.directory.service`), the
one fetch path it has. The caller owns the positions (where each partition's next record is,
from a snapshot or the log start); :meth:`PartitionReader.fetch` reads every asked partition
once from there and says, per partition, the records (read_committed: aborted transactions and
control records skipped) and the position to ask next, or the error, or where the partition
starts now when the position fell off its log.

Two ways behind one interface, chosen by :func:`make_partition_reader`: raw record batches
(:class:`~streams.kafkaio.rawkafka.RawFetcher`, read column-wise by
:func:`~streams.kafkaio.recordbatch.read_partition`: no Python object per record; the default
when this aiokafka version's internals are supported) or aiokafka's consumer (``getmany``,
``LOA_DIRECTORY_RAW_KAFKA=false`` or other aiokafka versions). Both give the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from streams.kafkaio.clients import make_raw_fetcher
from streams.kafkaio.internals import internals_supported
from streams.kafkaio.rawkafka import RawFetcher
from streams.kafkaio.recordbatch import FetchedRecords, read_partition
from streams.settings.model import Settings

__all__ = ["Fetched", "PartitionReader", "make_partition_reader"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """One partition's answer to a fetch."""

    #: The records from the asked position (empty when there were none yet, or on an error).
    records: FetchedRecords | None = None
    #: The broker's error for this partition (the position stays: ask again).
    error: Exception | None = None
    #: The position fell off the partition's log (compaction, retention): its start now.
    restart_at: int | None = None


class PartitionReader(Protocol):
    """Reads partitions of one topic at positions the caller keeps."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, positions: dict[int, int]) -> dict[int, Fetched]:
        """Every partition of ``positions`` read once from its position."""
        ...


def make_partition_reader(
    settings: Settings, topic: str, consumer: AIOKafkaConsumer, *, raw: bool, client_id: str
) -> PartitionReader:
    """Raw record batches when ``raw`` and this aiokafka's internals are supported, else
    ``consumer`` (a read_committed consumer the caller started and owns; manual assignment)."""
    if raw and internals_supported():
        fetcher = make_raw_fetcher(settings, client_id, max_wait_ms=50)
        return _RawReader(topic, fetcher, consumer)
    return _ConsumerReader(topic, consumer)


class _RawReader:
    """Fetch requests answered as raw bytes, read column-wise."""

    def __init__(self, topic: str, fetcher: RawFetcher, consumer: AIOKafkaConsumer) -> None:
        self._topic, self._fetcher, self._consumer = topic, fetcher, consumer

    async def start(self) -> None:
        await self._fetcher.start()

    async def close(self) -> None:
        await self._fetcher.close()

    async def fetch(self, positions: dict[int, int]) -> dict[int, Fetched]:
        out: dict[int, Fetched] = {}
        for p, answer in (await self._fetcher.fetch(self._topic, positions)).items():
            if isinstance(answer.error, OffsetOutOfRangeError):
                tp = TopicPartition(self._topic, p)
                start = (await self._consumer.beginning_offsets([tp]))[tp]
                out[p] = Fetched(restart_at=int(start))
            elif answer.error is not None:
                out[p] = Fetched(error=answer.error)
            else:
                out[p] = Fetched(read_partition(answer.data, positions[p], aborted=answer.aborted))
        return out


class _ConsumerReader:
    """aiokafka's consumer, assigned the asked partitions and sought to the asked positions
    whenever they are not where its last answer left them."""

    def __init__(self, topic: str, consumer: AIOKafkaConsumer) -> None:
        self._topic, self._consumer = topic, consumer
        #: the position each partition's last answer named (where the consumer stands)
        self._next: dict[int, int] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the consumer is the caller's: it stops it

    async def fetch(self, positions: dict[int, int]) -> dict[int, Fetched]:
        consumer = self._consumer
        tps = {p: TopicPartition(self._topic, p) for p in positions}
        if set(consumer.assignment()) != set(tps.values()):
            consumer.assign(list(tps.values()))
            self._next.clear()
        for p, offset in positions.items():
            if self._next.get(p) != offset:
                consumer.seek(tps[p], offset)
        data = await consumer.getmany(*tps.values(), timeout_ms=100, max_records=100_000)
        out: dict[int, Fetched] = {}
        for p, tp in tps.items():
            records = data.get(tp, [])
            pairs = [(r.key, r.value) for r in records]
            # past control records and aborted transactions too: the consumer's own position
            position = int(await consumer.position(tp))
            self._next[p] = position
            fetched = FetchedRecords.from_pairs(pairs, [r.offset for r in records])
            out[p] = Fetched(replace(fetched, next_offset=position))
        return out
