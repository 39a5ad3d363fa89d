"""The directory's snapshots: each owned partition's columns on local disk, with their offset.

Where it sits: beside :class:`~streams.directory.service.DirectoryService`, which owns the
partitions and hands their columns over; the file format is :mod:`streams.directory.snapshot`.
Every ``LOA_SNAPSHOT_INTERVAL_S`` (and at once after a long replay, and once more on stop)
each owned partition that changed is written; a newly owned partition starts from its newest
usable snapshot (:meth:`SnapshotKeeper.load`) and replays only what came after its offset.

Guarantee: a snapshot never changes what the index holds once caught up, only how much must be
replayed to get there; an unusable or unreadable one costs a full replay, never the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from streams.directory.index import ColumnsAt, DirectoryPartition
from streams.directory.snapshot import (
    SnapshotKey,
    SnapshotUnusable,
    load_snapshot,
    region_fingerprint,
    write_snapshot,
)
from streams.regions import RegionRegistry
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait

__all__ = ["SnapshotKeeper"]

log = logging.getLogger("streams.directory.service")

#: How long a stopping worker may spend on its last snapshot (within LOA_SHUTDOWN_TIMEOUT_S).
STOP_SNAPSHOT_S = 5.0


class SnapshotKeeper:
    """Writes and loads the owned partitions' snapshots: ``columns_at(p)`` gives a partition's
    offset and columns (None: not owned), ``owned()`` the partitions owned now."""

    def __init__(
        self,
        settings: Settings,
        regions: RegionRegistry,
        columns_at: ColumnsAt,
        owned: Callable[[], set[int]],
    ) -> None:
        self._settings, self._regions = settings, regions
        self._columns_at, self._owned = columns_at, owned
        #: the cluster the snapshots belong to (None: snapshots off)
        self._cluster_id: str | None = None
        #: the offset last written (or loaded) per partition
        self._written: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        #: counts, for tests and benchmarks
        self.loads = 0
        self.fallbacks = 0
        self.writes = 0

    @property
    def on(self) -> bool:
        return self._cluster_id is not None

    async def start(self, cluster: str) -> None:
        self._cluster_id = cluster
        self._task = asyncio.create_task(self._run(), name="loa-directory-snapshots")

    async def stop(self) -> None:
        if self._task is not None:
            # what this worker replayed spares the next owner of these partitions a replay;
            # best effort and bounded: a disk or broker problem only costs that snapshot
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_SNAPSHOT_S):
                    await self.write()
        await cancel_and_wait(self._task)

    def forget(self, p: int) -> None:
        """``p`` was revoked."""
        self._written.pop(p, None)

    def written_at(self, p: int) -> int:
        """The offset of ``p``'s last snapshot (0: none)."""
        return self._written.get(p, 0)

    def soon(self) -> None:
        """Write the snapshots now rather than at the next interval (a long replay was just
        paid for)."""
        self._soon.set()

    def key(self, p: int) -> SnapshotKey:
        assert self._cluster_id is not None
        s = self._settings
        return SnapshotKey(
            cluster_id=self._cluster_id,
            topic=s.directory_topic,
            partition=p,
            partitions=s.partitions,
            h3_resolution=s.h3_resolution,
            regions=region_fingerprint(self._regions),
        )

    def load(self, p: int, start: int, end: int) -> tuple[DirectoryPartition, int] | None:
        """(in a thread) The snapshot of ``p`` as index and next offset, or None: replay all."""
        try:
            found = load_snapshot(
                self._settings.resolved_data_dir,
                self.key(p),
                log_start=start,
                log_end=end,
            )
        except SnapshotUnusable as exc:
            log.info("directory partition %d: no usable snapshot, full replay (%s)", p, exc)
            self.fallbacks += 1
            return None
        except Exception:  # a bug or a disk fault must cost a replay, not the partition
            log.exception("directory partition %d: snapshot load failed, full replay", p)
            self.fallbacks += 1
            return None
        log.info(
            "directory partition %d: %d subscribers from %s, replaying from offset %d",
            p,
            found.index.ids.shape[0],
            found.path,
            found.offset,
        )
        self.loads += 1
        self._written[p] = found.offset
        return found.index, found.offset

    async def write(self) -> int:
        """Write a snapshot of every owned partition that changed since its last one; returns
        how many were written. A disk error is logged and costs only that snapshot."""
        written = 0
        if self._cluster_id is None:
            return 0
        for p in sorted(self._owned()):
            # columns at or past the offset are a valid snapshot of it (replaying what they
            # hold is a no-op)
            found = await self._columns_at(p)
            if found is None or self._written.get(p) == found[0]:
                continue
            offset, columns = found
            began = time.perf_counter()
            try:
                path = await asyncio.to_thread(
                    write_snapshot,
                    self._settings.resolved_data_dir,
                    self.key(p),
                    offset,
                    columns,
                )
            except OSError:
                log.exception("directory partition %d: snapshot at offset %d failed", p, offset)
                continue
            self._written[p] = offset
            if path is not None:
                written += 1
                self.writes += 1
                log.info(
                    "directory partition %d: snapshot of %d subscribers at offset %d written in"
                    " %.2f s",
                    p,
                    columns["ids"].shape[0],
                    offset,
                    time.perf_counter() - began,
                )
        return written

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.snapshot_interval_s):
                    await self._soon.wait()
            self._soon.clear()
            try:
                await self.write()
            except Exception:  # the next round tries again; the directory itself is unharmed
                log.exception("directory snapshots failed")
