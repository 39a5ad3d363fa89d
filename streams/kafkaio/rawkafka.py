"""Raw Kafka paths for millions of fixed-layout records: prebuilt batches out, raw fetches in.

Where it sits: under the directory loader (``streams.directory.load``), the directory restore
(``streams.directory.service``) and the fan-out emitter (``streams.fanout.scheduler``). They move
millions of fixed-layout records, where aiokafka's per-record paths (one ``append`` per record
when producing, one ``ConsumerRecord`` per record when consuming) cost more than everything else
together.

* :class:`PrebuiltBatch` is a whole record batch built column-wise
  (:mod:`streams.kafkaio.recordbatch`), handed to the public ``producer.send_batch``. It
  implements the part of aiokafka's private ``BatchBuilder`` protocol that the producer's
  accumulator and sender use (``record_count``, ``_set_producer_state``, ``_build``, ...), so
  the idempotent producer still assigns producer id, epoch and sequence, retries and acks.
* :class:`RawFetcher` sends Fetch requests through aiokafka's ``AIOKafkaClient`` (connection,
  metadata, API version negotiation) and returns each partition's bytes, which
  :func:`streams.kafkaio.recordbatch.read_partition` reads under the consumer's rules.

Private API used (imported through :mod:`streams.kafkaio.internals` only):
``aiokafka.client.AIOKafkaClient`` (``bootstrap``, ``send``, ``cluster``,
``_wait_on_metadata``, ``force_metadata_update``), ``aiokafka.protocol.fetch.FetchRequest`` and
the accumulator's builder protocol. Checked against aiokafka 0.14 by
``tests/integration/test_directory.py``; if an aiokafka upgrade breaks them, set
``LOA_DIRECTORY_RAW_KAFKA=false`` and the directory falls back to the public per-record APIs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as kafka_errors
import numpy as np
import numpy.typing as npt
from aiokafka import TopicPartition

from streams.kafkaio.internals import AIOKafkaClient, FetchRequest
from streams.kafkaio.recordbatch import HEADER_SIZE, BatchLayout, build_records, finish_batch

__all__ = ["PartitionFetch", "PrebuiltBatch", "RawFetcher", "prebuilt_batches", "template_batches"]

_READ_COMMITTED = 1
#: Errors after which the partition's leader must be looked up again.
_STALE_METADATA = (
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.UnknownTopicOrPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.KafkaStorageError,
)


class PrebuiltBatch:
    """A finished records section standing in for aiokafka's ``BatchBuilder``."""

    def __init__(self, records: bytearray, count: int, *, transactional: bool = False) -> None:
        """``records``: after :data:`HEADER_SIZE` bytes of room for the batch header."""
        self._records = records
        self._size = len(records)
        self._count = count
        self._transactional = transactional
        self._timestamp_ms = int(time.time() * 1000)
        self._state = (-1, -1, -1)
        self._buffer: bytearray | None = None

    def append(self, *, timestamp: Any, key: Any, value: Any, headers: Any = ()) -> None:
        # full: ``producer.send`` to the same partition opens a batch of its own
        return None

    def close(self) -> None:
        pass

    def closed(self) -> bool:
        return True

    def record_count(self) -> int:
        return self._count

    def size(self) -> int:
        return self._size

    def _set_producer_state(
        self, producer_id: int, producer_epoch: int, base_sequence: int
    ) -> None:
        self._state = (producer_id, producer_epoch, base_sequence)

    def _build(self) -> bytearray:
        # called again on a retry: the same bytes (same sequence) go again, as aiokafka does
        if self._buffer is None:
            pid, epoch, seq = self._state
            self._buffer = finish_batch(
                self._records,
                self._count,
                timestamp_ms=self._timestamp_ms,
                producer_id=pid,
                producer_epoch=epoch,
                base_sequence=seq,
                transactional=self._transactional,
            )
        return self._buffer


#: Bytes a record adds around its key and value (length, attributes, deltas, lengths, headers).
_RECORD_OVERHEAD = 16


def _per_batch(key_width: int, value_width: int, batch_bytes: int) -> int:
    """Records of these widths that fit a batch of about ``batch_bytes``."""
    return max(1, (batch_bytes - HEADER_SIZE) // (key_width + value_width + _RECORD_OVERHEAD))


def prebuilt_batches(
    keys: npt.NDArray[np.uint8],
    values: npt.NDArray[np.uint8],
    batch_bytes: int,
    *,
    transactional: bool = False,
) -> Iterator[PrebuiltBatch]:
    """``keys[i] -> values[i]`` (one row per record) cut into batches of about ``batch_bytes``."""
    per_batch = _per_batch(keys.shape[1], values.shape[1], batch_bytes)
    for a in range(0, keys.shape[0], per_batch):
        records, count = build_records(
            keys[a : a + per_batch], values[a : a + per_batch], head_room=HEADER_SIZE
        )
        yield PrebuiltBatch(records, count, transactional=transactional)


def template_batches(
    keys: npt.NDArray[np.uint8],
    slots: list[npt.NDArray[np.uint8]],
    template: bytes,
    value_slots: tuple[tuple[int, int], ...],
    batch_bytes: int,
    *,
    transactional: bool = False,
) -> Iterator[PrebuiltBatch]:
    """What :func:`prebuilt_batches` yields for values that are ``template`` with
    ``slots[j][i]`` written at ``value_slots[j]``, without a values matrix: each batch is a copy
    of its :class:`~streams.kafkaio.recordbatch.BatchLayout` (kept for the next chunk) with the
    keys and slots written in."""
    n, kw = keys.shape
    per_batch = _per_batch(kw, len(template), batch_bytes)
    for a in range(0, n, per_batch):
        b = min(n, a + per_batch)
        layout = _batch_layout(kw, template, value_slots, b - a)
        records = layout.fill(keys[a:b], [s[a:b] for s in slots])
        yield PrebuiltBatch(records, b - a, transactional=transactional)


@functools.lru_cache(maxsize=64)
def _batch_layout(
    key_width: int, template: bytes, value_slots: tuple[tuple[int, int], ...], n: int
) -> BatchLayout:
    return BatchLayout(key_width, template, list(value_slots), n, head_room=HEADER_SIZE)


@dataclass(frozen=True, slots=True)
class PartitionFetch:
    """One partition of a Fetch response."""

    #: The error the broker answered for this partition, if any (records are then empty).
    error: kafka_errors.KafkaError | None
    #: Record batches as the broker sent them (the last one may be cut short).
    data: bytes
    #: ``(producer_id, first_offset)`` of aborted transactions in the returned range.
    aborted: list[tuple[int, int]]


class RawFetcher:
    """Fetch requests for a set of partition positions, answered as raw bytes."""

    def __init__(
        self,
        client_options: dict[str, Any],
        *,
        max_partition_bytes: int = 8 * 1024 * 1024,
        max_bytes: int = 64 * 1024 * 1024,
        max_wait_ms: int = 50,
    ) -> None:
        """``client_options``: ``AIOKafkaClient`` arguments, from
        :func:`streams.kafkaio.clients.make_raw_fetcher`."""
        self._client = AIOKafkaClient(**client_options)
        self._max_partition_bytes = max_partition_bytes
        self._max_bytes = max_bytes
        self._max_wait_ms = max_wait_ms

    async def start(self) -> None:
        await self._client.bootstrap()

    async def close(self) -> None:
        await self._client.close()

    async def fetch(self, topic: str, positions: dict[int, int]) -> dict[int, PartitionFetch]:
        """Fetch every partition at its position (read_committed), one request per leader."""
        await self._client._wait_on_metadata(topic)
        by_node: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        out: dict[int, PartitionFetch] = {}
        for p, offset in positions.items():
            leader = self._client.cluster.leader_for_partition(TopicPartition(topic, p))
            if leader is None or leader == -1:
                self._client.force_metadata_update()
                out[p] = PartitionFetch(kafka_errors.LeaderNotAvailableError(), b"", [])
                continue
            by_node[leader].append((p, offset, self._max_partition_bytes))
        answers = await asyncio.gather(
            *(self._fetch_node(topic, node, parts) for node, parts in by_node.items())
        )
        for answer in answers:
            out.update(answer)
        return out

    async def _fetch_node(
        self, topic: str, node: int, parts: list[tuple[int, int, int]]
    ) -> dict[int, PartitionFetch]:
        request = FetchRequest(
            self._max_wait_ms, 1, self._max_bytes, _READ_COMMITTED, [(topic, parts)]
        )
        try:
            response = await self._client.send(node, request)
        except kafka_errors.KafkaError as exc:
            self._client.force_metadata_update()
            return {p: PartitionFetch(exc, b"", []) for p, _, _ in parts}
        out: dict[int, PartitionFetch] = {}
        for _, partitions in response.topics:
            for partition, error_code, _highwater, *part_data in partitions:
                error_type = kafka_errors.for_code(error_code)
                if error_type is not kafka_errors.NoError:
                    if issubclass(error_type, _STALE_METADATA):
                        self._client.force_metadata_update()
                    out[partition] = PartitionFetch(error_type(), b"", [])
                    continue
                # the layout of aiokafka's fetcher: aborted transactions are part_data[2] from
                # v11 on, part_data[-2] from v4, absent before; the records come last
                if response.API_VERSION >= 11:
                    aborted = part_data[2]
                elif response.API_VERSION >= 4:
                    aborted = part_data[-2]
                else:
                    aborted = None
                data = part_data[-1]
                out[partition] = PartitionFetch(
                    None,
                    bytes(data) if data else b"",
                    [(int(pid), int(first)) for pid, first in aborted or []],
                )
        return out
