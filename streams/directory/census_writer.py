"""The directory's census writer: each owned partition's census on ``<prefix>.directory.census``.

Where it sits: beside :class:`~streams.directory.service.DirectoryService`, which owns the
partitions and hands their columns over (:mod:`streams.directory.census` builds and encodes a
census). Each owned partition's census goes to the compacted census topic (key = partition
number in ASCII) once the partition is restored, then at most every ``LOA_CENSUS_INTERVAL_S``
while its offset moves, less often when refreshing would take more than
:data:`CENSUS_CPU_SHARE` of the worker (docs/census.md). A census is built in a worker thread
(numpy sorts release the GIL) and written with a producer of its own.

Guarantee: a failed census (broker away, a bug) is logged once, counted and tried again at the
next interval; the directory is never affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaProducer

from streams.directory.census import build_census, encode_census
from streams.directory.index import ColumnsAt
from streams.kafkaio.clients import make_producer, start_all
from streams.regions import RegionRegistry
from streams.settings.model import Settings
from streams.tasks import cancel_and_wait
from streams.topics import CENSUS_MAX_MESSAGE_BYTES

__all__ = ["CENSUS_CPU_SHARE", "CensusWriter"]

log = logging.getLogger("streams.directory.service")

#: Refreshing censuses of changed partitions takes at most this share of the worker's time:
#: after a census that took ``t`` seconds to build, no partition is refreshed for
#: ``t / share - t`` seconds. At 10M subscribers a census takes 1-1.5 s, so one partition is
#: refreshed every 20-30 s, and four that never stop changing each every 1.5-2 minutes instead
#: of every ``LOA_CENSUS_INTERVAL_S`` (docs/census.md). A restored partition's first census is
#: never held back: without it, reach counts are partial.
CENSUS_CPU_SHARE = 0.05
#: How long a stopping worker waits for the census producer (within LOA_SHUTDOWN_TIMEOUT_S).
STOP_S = 5.0


class CensusWriter:
    """Writes the census of the owned partitions: ``columns_at(p)`` gives a partition's offset
    and columns (None: not owned), ``owned()`` the partitions owned now."""

    def __init__(
        self,
        settings: Settings,
        regions: RegionRegistry,
        columns_at: ColumnsAt,
        owned: Callable[[], set[int]],
    ) -> None:
        self._settings, self._regions = settings, regions
        self._columns_at, self._owned = columns_at, owned
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        #: per partition: the offset and (loop) time of the last census written
        self._offsets: dict[int, int] = {}
        self._times: dict[int, float] = {}
        self._failing = False  # failures are logged once
        self._gate = 0.0  # loop time before which no census is refreshed
        self.writes = 0
        self.failures = 0
        #: Seconds the last census took to build and encode (in its thread).
        self.build_s = 0.0

    async def start(self) -> None:
        self._producer = make_producer(
            self._settings,
            max_request_size=CENSUS_MAX_MESSAGE_BYTES,
            linger_ms=0,
            client_id=f"{self._settings.app_id}-census",
        )
        await start_all(self._producer)
        self._task = asyncio.create_task(self._run(), name="loa-directory-census")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._producer is not None:
            with contextlib.suppress(Exception):  # a broker away must not hold up the stop
                async with asyncio.timeout(STOP_S):
                    await self._producer.stop()

    def due_now(self, p: int) -> None:
        """``p`` was just restored: its census is written now, not at the next interval."""
        self._offsets.pop(p, None)
        self._times.pop(p, None)
        self._soon.set()

    async def write(self) -> int:
        """Write the census of every owned partition that is due; returns how many were
        written. Due: never written since its restore (at once), or changed, not written for
        ``LOA_CENSUS_INTERVAL_S`` and the refresh gate open (:data:`CENSUS_CPU_SHARE`), the
        longest unrefreshed first. A partition that fails does not keep the others from
        theirs; the first failure is raised at the end (the caller logs it)."""
        failed: Exception | None = None
        written = 0
        for p in sorted(self._owned(), key=lambda p: self._times.get(p, -math.inf)):
            try:
                written += await self._census_of(p)
            except Exception as exc:  # one partition's failure must not cost the others theirs
                failed = failed or exc
        if failed is not None:
            raise failed
        return written

    async def _census_of(self, p: int) -> int:
        assert self._producer is not None
        loop = asyncio.get_running_loop()
        last = self._times.get(p)
        now = loop.time()
        if last is not None and (now - last < self._settings.census_interval_s or now < self._gate):
            return 0  # a refresh, not due yet (a first census after a restore always is)
        found = await self._columns_at(p)
        if found is None or self._offsets.get(p) == found[0]:
            return 0
        offset, columns = found
        began = time.perf_counter()
        value = await asyncio.to_thread(self._encode, p, offset, columns)
        self.build_s = spent = time.perf_counter() - began
        # the next refresh waits until this build is CENSUS_CPU_SHARE of the time since
        self._gate = loop.time() + spent * (1 / CENSUS_CPU_SHARE - 1)
        if p not in self._owned():
            return 0  # revoked meanwhile: the new owner writes its own
        await self._producer.send_and_wait(
            self._settings.census_topic, value, key=str(p).encode(), partition=0
        )
        self._offsets[p] = offset
        self._times[p] = loop.time()
        self.writes += 1
        log.debug("directory partition %d: census at offset %d, %d bytes", p, offset, len(value))
        return 1

    def _encode(
        self, p: int, offset: int, columns: dict[str, npt.NDArray[np.unsignedinteger]]
    ) -> bytes:
        census = build_census(
            columns,
            partition=p,
            offset=offset,
            made_at=time.time(),
            regions=self._regions,
            h3_resolution=self._settings.h3_resolution,
        )
        return encode_census(census)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.census_interval_s):
                    await self._soon.wait()
            self._soon.clear()
            try:
                await self.write()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next interval tries again; the directory is unharmed
                self.failures += 1
                if not self._failing:
                    log.exception(
                        "directory census not written; retrying every %g s (logged once)",
                        self._settings.census_interval_s,
                    )
                self._failing = True
            else:
                if self._failing:
                    log.info("directory census written again")
                self._failing = False
