"""The directory's Kafka side: replays owned partitions of ``loa.directory.changes`` into
columnar indexes and keeps them current.

Durability choice: the compacted changes topic *is* the store. On start and on every
rebalance a worker replays each newly owned partition with its own consumer (manual
assignment, no consumer group, no committed offsets), so a restarted worker serves exactly what
the topic holds, including changes written while it was down. The only local state is a
snapshot to start the replay from (below), never a store served from: a local copy could only
be *older* than the topic, and a full
replay of the compacted topic is bounded by the directory's size (one record per live
subscriber, plus tombstones younger than ``delete.retention.ms``), decoded vectorized
(``streams.directory.wire``) and merged with one sort per 2M changes. Orders wait for the
replay (:meth:`DirectoryService.ready`): an alert is never fanned out against a partial
directory.

Ownership: a partition is claimed only by :meth:`DirectoryService.restore`, which
:mod:`streams.kafkaio.ownership` calls (a worker's group, or
:func:`streams.kafkaio.ownership.owning` for a
tool); :meth:`DirectoryService.ready` is a read and never claims: a partition not owned (yet)
is waited for like a replay that does not move, then :class:`DirectoryNotReady`.

Restore speed: one fetch path (:mod:`streams.kafkaio.reader`) from positions the service
keeps: by default the partitions are fetched as raw record batches and read column-wise (the
consumer's read_committed rules), so no Python object is built per record;
``LOA_DIRECTORY_RAW_KAFKA=false`` reads them with aiokafka's consumer instead; both give the
same records to the same decoder and index.

Takeover speed: every ``LOA_SNAPSHOT_INTERVAL_S`` the service writes each owned partition's
columns with the offset they include (:mod:`streams.directory.snapshot`). A newly owned
partition starts from the newest usable local snapshot and replays only the records after its
offset; without one (missing, stale, from another cluster or settings, corrupt) it replays from
the start as above. A partition that had to replay :data:`SNAPSHOT_AFTER_REPLAY` records or more
to catch up is snapshotted at once rather than at the next interval (the replay just paid for is
what the next takeover would pay again), and a stopping worker (SIGTERM) writes a last snapshot
of what changed, bounded by ``STOP_SNAPSHOT_S`` (:mod:`streams.directory.snapshots`). A
snapshot never changes *what* the index holds once caught up, only how much must be replayed
to get there: the index is the topic's content up to the offset, and a replay of a suffix
again is harmless (last change per recipient wins).

Census: every owned partition's census (:mod:`streams.directory.census`: counts by ward,
first channel and test flag, located subscribers by cell) goes to the compacted
``<prefix>.directory.census`` once the partition is restored, then while its offset moves
(:mod:`streams.directory.census_writer`), so ingest can count an alert's reach without the
directory. It is made from the same copy-on-write columns a snapshot takes, in a worker
thread. What the event loop pays: merging the pending changes (the next fan-out chunk would
merge them anyway) and, when the partition then changes in place, one copy of its columns (at
10M subscribers about 17 ms, once per census). A failed census is logged once, counted, and
tried again at the next interval; the directory is never affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.directory.census_writer import CensusWriter
from streams.directory.index import DirectoryPartition
from streams.directory.snapshots import SnapshotKeeper
from streams.directory.wire import decode_fetched
from streams.errors import DirectoryNotReady
from streams.kafkaio.clients import (
    cluster_id,
    make_reader,
    start_all,
)
from streams.kafkaio.reader import PartitionReader, make_partition_reader
from streams.kafkaio.recordbatch import FetchedRecords
from streams.regions import RegionRegistry
from streams.retrying import RetryPolicy
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = ["DirectoryService"]

log = logging.getLogger(__name__)


#: A partition that replayed this many records to catch up is snapshotted right away.
SNAPSHOT_AFTER_REPLAY = 100_000
#: A failed fetch is tried again within a second: a takeover's replay waits on it.
FETCH_RETRY = RetryPolicy(base_s=1.0, cap_s=1.0)


class DirectoryService:
    """Owns one consumer and the indexes of the partitions this worker fans out.

    Why this long (~285 lines): restoring, revoking, following and waiting for a partition
    all read and change the same positions and indexes under one lock; its snapshots
    (:class:`~streams.directory.snapshots.SnapshotKeeper`) and censuses
    (:class:`~streams.directory.census_writer.CensusWriter`) are classes of their own."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self._settings = settings
        self._regions = regions
        self._topic = settings.directory_topic
        self._consumer: AIOKafkaConsumer | None = None
        self._indexes: dict[int, DirectoryPartition] = {}
        self._changed = asyncio.Condition()
        #: Held while the owned set changes, and by a snapshot or census between reading a
        #: partition's offset and its columns
        self._owned_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.bad_records = 0
        #: the one fetch path, and the next offset to fetch of each owned partition
        self._reader: PartitionReader | None = None
        self._positions: dict[int, int] = {}
        self._snapshots = SnapshotKeeper(settings, regions, self._columns_at, lambda: self.owned)
        self._census = CensusWriter(settings, regions, self._columns_at, lambda: self.owned)

    async def start(self) -> None:
        self._consumer = make_reader(
            self._settings,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # A long-polling fetch holds the connection: ListOffsets (``ready``) queues behind
            # it, so keep the poll short or every order waits up to the 500 ms default.
            fetch_max_wait_ms=50,
            client_id=f"{self._settings.app_id}-directory",
        )
        await start_all(self._consumer)
        await self._census.start()
        self._reader = make_partition_reader(
            self._settings,
            self._topic,
            self._consumer,
            raw=self._settings.directory_raw_kafka,
            client_id=f"{self._settings.app_id}-directory-fetch",
        )
        await self._reader.start()
        run = self._run()
        self._task = asyncio.create_task(run, name="loa-directory")
        if self._settings.snapshot_interval_s > 0:
            await self._snapshots.start(await cluster_id(self._settings))

    async def stop(self) -> None:
        await self._snapshots.stop()
        await self._census.stop()
        await cancel_and_wait(self._task)
        if self._reader is not None:
            await self._reader.close()
        if self._consumer is not None:
            await self._consumer.stop()

    def partition(self, p: int) -> DirectoryPartition:
        return self._indexes[p]

    @property
    def owned(self) -> set[int]:
        return set(self._indexes)

    async def _set_owned(self, partitions: set[int]) -> None:
        """Own exactly ``partitions``: new ones start at their restore point (a snapshot's
        offset or the log start), the others are dropped. Under the owned lock, from
        :meth:`restore` and :meth:`revoke` only."""
        for p in set(self._indexes) - partitions:
            del self._indexes[p]
            del self._positions[p]
            self._snapshots.forget(p)
        restored = await self._restore_points(partitions - set(self._indexes))
        for p, (index, offset) in restored.items():
            self._indexes[p] = index
            self._positions[p] = offset
        log.info("directory owns partitions %s", sorted(partitions))

    async def _restore_points(
        self, partitions: set[int]
    ) -> dict[int, tuple[DirectoryPartition, int]]:
        """Where each new partition's replay starts: its newest usable snapshot and the offset
        after it, else an empty index and the partition's log start."""
        assert self._consumer is not None
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        starts = await self._consumer.beginning_offsets(tps)
        if not self._snapshots.on:
            return {tp.partition: (DirectoryPartition(), int(starts[tp])) for tp in tps}
        ends = await self._consumer.end_offsets(tps)
        loaded = await asyncio.gather(
            *(
                asyncio.to_thread(
                    self._snapshots.load, tp.partition, int(starts[tp]), int(ends[tp])
                )
                for tp in tps
            )
        )
        return {
            tp.partition: found or (DirectoryPartition(), int(starts[tp]))
            for tp, found in zip(tps, loaded, strict=True)
        }

    async def snapshot(self) -> int:
        """Write a snapshot of every owned partition that changed since its last one
        (:meth:`SnapshotKeeper.write`); returns how many were written."""
        return await self._snapshots.write()

    @property
    def snapshot_loads(self) -> int:
        return self._snapshots.loads

    @property
    def snapshot_fallbacks(self) -> int:
        return self._snapshots.fallbacks

    @property
    def snapshot_writes(self) -> int:
        return self._snapshots.writes

    # -- census (streams.directory.census): written for ingest, never read here

    async def census(self) -> int:
        """Write the census of every owned partition that is due (:meth:`CensusWriter.write`)."""
        return await self._census.write()

    @property
    def census_writes(self) -> int:
        return self._census.writes

    @property
    def census_failures(self) -> int:
        return self._census.failures

    async def _columns_at(
        self, p: int
    ) -> tuple[int, dict[str, npt.NDArray[np.unsignedinteger]]] | None:
        """``p``'s offset, then its columns, with no reassignment in between (as for a
        snapshot): the columns hold at least every change before the offset. None when ``p``
        is not owned or not started."""
        async with self._owned_lock:
            offset = await self._position(TopicPartition(self._topic, p))
            index = self._indexes.get(p)
            if index is None or offset < 0:
                return None
            return offset, index.columns()

    # -- partition ownership (streams.kafkaio.ownership): restore = replay to the topic's end

    component = "directory"

    async def restore(self, partition: int) -> None:
        """Own ``partition`` and replay it up to the changes topic's end as of now (raises
        :class:`DirectoryNotReady` when that takes longer than the catch-up timeout); a long
        replay is snapshotted at once (:data:`SNAPSHOT_AFTER_REPLAY`)."""
        async with self._owned_lock:
            if partition not in self._indexes:
                await self._set_owned(set(self._indexes) | {partition})
        async with self._changed:  # a read waiting for this partition may start waiting for it
            self._changed.notify_all()
        await self.ready(partition)
        position = await self._position(TopicPartition(self._topic, partition))
        if position - self._snapshots.written_at(partition) >= SNAPSHOT_AFTER_REPLAY:
            self._snapshots.soon()
        # a restored partition gets its census now, not at the next interval
        self._census.due_now(partition)

    async def revoke(self, partitions: set[int]) -> None:
        async with self._owned_lock:
            await self._set_owned(self.owned - partitions)

    async def ready(self, p: int, *, timeout_s: float | None = None) -> DirectoryPartition:
        """The index of ``p`` once it has applied every change in the topic as of now.

        Raises :class:`DirectoryNotReady` when the replay makes no progress for ``timeout_s``
        (default ``LOA_DIRECTORY_CATCHUP_TIMEOUT_S``): a stall, not a long replay, which at
        100M subscribers takes minutes and must not count as a failure. A read never claims
        ``p``: one this worker does not own is waited for (its restore may be starting) as
        long, then :class:`DirectoryNotReady` too."""
        assert self._consumer is not None
        timeout = self._settings.directory_catchup_timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while p not in self._indexes:
                now = loop.time()
                if now >= deadline:
                    raise DirectoryNotReady(
                        f"directory partition {p} is not owned by this worker (no restore of it"
                        f" began in {timeout:g} s)"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await self._changed.wait()
        tp = TopicPartition(self._topic, p)
        end = (await self._consumer.end_offsets([tp]))[tp]
        seen, deadline = -1, loop.time() + timeout
        async with self._changed:
            while (position := await self._position(tp)) < end:
                now = loop.time()
                if position > seen:
                    seen, deadline = position, now + timeout
                elif now >= deadline:
                    raise DirectoryNotReady(
                        f"directory partition {p} made no progress for {timeout:g} s at offset"
                        f" {max(position, 0)} of {end}"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await self._changed.wait()
        index = self._indexes.get(p)
        if index is None:
            raise DirectoryNotReady(f"directory partition {p} was revoked while it was read")
        index.compact()
        return index

    async def stats(self) -> dict[int, tuple[int, int, int]]:
        """``{partition: (subscribers, pending changes, records behind the topic end)}``, for
        the ``loa_directory_*`` and ``loa_consumer_lag_records`` metrics (never compacts)."""
        assert self._consumer is not None
        owned = dict(self._indexes)
        tps = [TopicPartition(self._topic, p) for p in owned]
        end = await self._consumer.end_offsets(tps) if tps else {}
        return {
            tp.partition: (
                int(owned[tp.partition].ids.shape[0]),
                owned[tp.partition].pending_rows,
                max(end[tp] - max(await self._position(tp), 0), 0),
            )
            for tp in tps
        }

    async def _position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp.partition, -1)

    async def _run(self) -> None:
        while True:
            if not self._positions:
                await asyncio.sleep(0.1)
                continue
            # a broker hiccup or a corrupt batch must not end the directory: retried
            await FETCH_RETRY.run(self._fetch, what="directory fetch", log=log)

    async def _fetch(self) -> None:
        """Fetch every owned partition once and apply what came; a partition's error is raised
        after the others are applied (the policy waits before the next fetch)."""
        assert self._reader is not None
        asked = dict(self._positions)
        if not asked:
            return  # all revoked meanwhile
        failed: list[Exception] = []
        try:
            for p, answer in (await self._reader.fetch(asked)).items():
                index = self._indexes.get(p)
                # the partition was dropped, or re-assigned from the start, meanwhile
                if index is None or self._positions.get(p) != asked[p]:
                    continue
                if answer.restart_at is not None:
                    log.warning(
                        "directory partition %d: offset %d out of range, from %d",
                        p,
                        asked[p],
                        answer.restart_at,
                    )
                    self._positions[p] = answer.restart_at
                elif answer.error is not None or answer.records is None:
                    log.warning("directory fetch of partition %d failed: %r", p, answer.error)
                    failed.append(answer.error or RuntimeError("no records and no error"))
                else:
                    self._apply(p, index, answer.records)
                    self._positions[p] = answer.records.next_offset
        finally:
            async with self._changed:
                self._changed.notify_all()
        if failed:
            raise failed[0]

    def _apply(self, p: int, index: DirectoryPartition, records: FetchedRecords) -> None:
        if not len(records):
            return
        batch, errors = decode_fetched(
            records, self._regions, h3_resolution=self._settings.h3_resolution
        )
        for error in errors[:5]:
            log.warning("bad directory change in partition %d: %s", p, error)
        self.bad_records += len(errors)
        index.apply(batch)
