"""The directory census as every worker sees it: the latest census of each partition, for
counting an alert's reach at decision time.

Where it sits: beside ingest (which calls :meth:`CensusReplica.reach`), reading what the
directory services write (:mod:`streams.directory.census`). It is a
:class:`~streams.kafkaio.replica.CompactedReplica` of ``<prefix>.directory.census``: replayed
from the start on :meth:`~CensusReplica.start`, then followed, so it holds the newest census
of every partition whichever worker wrote it.

Guarantee: :meth:`CensusReplica.reach` counts only censuses that decode, name their own
partition in their key, and index the same region registry and channels as this worker; any
other record leaves its partition out (``Reach.partitions_counted`` < ``Reach.partitions``)
and is listed in :meth:`CensusReplica.errors`. Counts are as of each census's offset
(``Reach.as_of`` is the oldest census's time), never fresher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.directory.census import Census, CensusUnusable, Reach, audience_reach, decode_census
from streams.directory.snapshot import region_fingerprint
from streams.errors import quote
from streams.kafkaio.replica import CompactedReplica
from streams.records import CHANNELS
from streams.regions import RegionRegistry
from streams.settings.model import Settings

__all__ = ["CensusReplica"]


class CensusReplica:
    """Follows the census topic; counts an alert's reach from the latest census of each
    directory partition."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self._settings = settings
        self._regions = regions
        self._fingerprint = region_fingerprint(regions)
        self._replica: CompactedReplica[Census] = CompactedReplica(
            settings, settings.census_topic, partitions=1, decode=self._decode, name="census"
        )

    async def start(self) -> None:
        await self._replica.start()

    async def stop(self) -> None:
        await self._replica.stop()

    async def ready(self, *, timeout_s: float) -> None:
        """Wait until every census written before this call is applied
        (:class:`streams.kafkaio.replica.ReplicaNotReady` after ``timeout_s``)."""
        await self._replica.ready(timeout_s=timeout_s)

    def censuses(self) -> dict[int, Census]:
        """The latest usable census of each partition (by partition number)."""
        return {c.partition: c for c in self._replica.items().values()}

    def errors(self) -> Mapping[bytes, str]:
        """Keys whose latest record is not a usable census, with the reason."""
        return self._replica.errors()

    def reach(self, targets: Sequence[str], cells: Sequence[str], test_only: bool) -> Reach:
        """Whom an alert reaches, by first channel, before category opt-outs, frequency caps
        and lineage dedup: home ward under one of the region ``targets`` codes, or location
        inside the compacted H3 ``cells`` (hex, as in ``FanoutOrder.cells``); only the test
        audience with ``test_only``. Over ``LOA_PARTITIONS`` partitions: a partition without
        a usable census is not counted (``Reach.complete`` is False). Raises
        :class:`streams.errors.UnknownRegion` for a code not in the registry.

        The arguments are those of ``streams.ingest.reach.ReachCounter``, so ingest's counter
        is ``lambda t, c, test: IngestReach(**dataclasses.asdict(replica.reach(t, c, test)))``.
        """
        return audience_reach(
            self.censuses(),
            self._regions,
            targets=targets,
            cells=cells,
            test_only=test_only,
            partitions=self._settings.partitions,
        )

    def _decode(self, key: bytes, value: bytes) -> Census:
        census = decode_census(value)
        if key != str(census.partition).encode():
            shown = quote(key.decode("utf-8", "replace"))
            raise CensusUnusable(f"census of partition {census.partition} under key {shown}")
        if census.regions != self._fingerprint:
            raise CensusUnusable("census of another region registry (ward indexes differ)")
        if census.channels != CHANNELS:
            raise CensusUnusable(f"census of channels {', '.join(census.channels)}")
        return census
