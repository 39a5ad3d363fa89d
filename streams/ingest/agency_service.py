"""The agency registry's Kafka side: the compacted topic ``<prefix>.agencies``, written by
``loa agencies load`` / ``remove`` and held in memory by every worker.

Source of truth: the topic (key = agency id, value = ``schemas/agency.schema.json``, tombstone =
the agency is removed). Files under ``deploy/agencies/`` only seed it. Every worker follows the
whole topic with :class:`AgencyRegistryService` (a
:class:`~streams.kafkaio.replica.CompactedReplica`), so adding an agency, rotating a key, changing
a jurisdiction or removing an agency takes effect on every worker without a restart.

Guarantee: after :meth:`AgencyRegistryService.ready` returns, :attr:`registry` reflects every
registry record written before the call (an alert published after its agency was loaded is
judged with it). A record that breaks the schema removes its agency (fail closed) and is
reported by :attr:`AgencyRegistry.invalid`, which ``unknown_sender`` rejections quote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

from streams.errors import AgenciesNotReady, InvalidAgency, quote
from streams.ingest.agencies import (
    Agency,
    AgencyRegistry,
    add_keys,
    decode_agency_record,
    load_agency_files,
    with_key,
)
from streams.ingest.signatures import (
    KeyPair,
    key_file_stem,
    load_private_key,
    new_key_pair,
    read_public_key_file,
    write_key_pair,
)
from streams.kafkaio.clients import (
    ensure_decision_topics,
    make_producer,
    read_to_end,
    start_all,
)
from streams.kafkaio.replica import CompactedReplica, ReplicaNotReady
from streams.settings.model import Settings

__all__ = [
    "AgencyRegistryService",
    "ensure_local_key",
    "load_agencies",
    "publish_agencies",
    "read_agencies",
    "remove_agencies",
]


class AgencyRegistryService:
    """Every worker's in-memory copy of the agency registry, kept current from the topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._replica: CompactedReplica[Agency] = CompactedReplica(
            settings,
            settings.agencies_topic,
            partitions=1,
            decode=decode_agency_record,
            name="agencies",
        )
        self._snapshot = AgencyRegistry()
        self._snapshot_version = -1

    async def start(self) -> None:
        await self._replica.start()

    async def stop(self) -> None:
        await self._replica.stop()

    @property
    def registry(self) -> AgencyRegistry:
        """An immutable snapshot of what has been applied so far (rebuilt only on change)."""
        if self._snapshot_version != self._replica.version:
            version = self._replica.version
            self._snapshot = AgencyRegistry(
                MappingProxyType({a.id: a for a in self._replica.items().values()}),
                MappingProxyType(
                    {k.decode("utf-8", "replace"): why for k, why in self._replica.errors().items()}
                ),
            )
            self._snapshot_version = version
        return self._snapshot

    @property
    def bad_records(self) -> int:
        return self._replica.bad_records

    async def ready(self, *, timeout_s: float | None = None) -> AgencyRegistry:
        """The registry once every record written before this call is applied.

        Raises :class:`~streams.errors.AgenciesNotReady` (retriable) after ``timeout_s``
        (default ``LOA_AGENCIES_CATCHUP_TIMEOUT_S``).
        """
        timeout = self._settings.agencies_catchup_timeout_s if timeout_s is None else timeout_s
        try:
            await self._replica.ready(timeout_s=timeout)
        except ReplicaNotReady as exc:
            raise AgenciesNotReady(str(exc)) from None
        return self.registry


async def publish_agencies(settings: Settings, agencies: Iterable[Agency]) -> int:
    """Write each agency as its full record (replacing the previous one). Returns the count."""
    producer = make_producer(settings)
    await start_all(producer)
    try:
        sent = [
            await producer.send(settings.agencies_topic, agency.to_json(), key=agency.id.encode())
            for agency in agencies
        ]
        await asyncio.gather(*sent)  # raises if the broker refused any of them
        return len(sent)
    finally:
        await producer.stop()


async def load_agencies(
    settings: Settings, path: Path, *, key_files: Iterable[Path] = ()
) -> list[Agency]:
    """``loa agencies load``: validate the agency file(s) at ``path`` (a file or a directory of
    ``*.json``), merge in the public keys of ``key_files`` (``.pub.json``), then write every
    agency as its full record and make its decision topic. Nothing is written unless
    everything is valid.

    Raises :class:`~streams.errors.InvalidAgency`.
    """
    agencies = add_keys(load_agency_files(path), (read_public_key_file(f) for f in key_files))
    await publish_agencies(settings, agencies)
    # their decision topics, so an agency's reader finds its topic before its first alert
    await ensure_decision_topics(settings, (a.id for a in agencies))
    return agencies


async def ensure_local_key(
    settings: Settings, agency_id: str, key_dir: Path, *, agencies_path: Path
) -> KeyPair:
    """For the demo and tests: the key ``<agency>/local`` in ``key_dir`` (made on first use),
    registered with that agency's record from ``agencies_path`` (a file or directory holding it).

    Only ``agency_id``'s record is written, so registering keys for several agencies one after
    the other keeps each. The private key never leaves ``key_dir``; later runs reuse it.
    Raises :class:`~streams.errors.InvalidAgency` if ``agencies_path`` has no such agency.
    """
    agency = next((a for a in load_agency_files(agencies_path) if a.id == agency_id), None)
    if agency is None:
        raise InvalidAgency(f"{agencies_path} has no agency {quote(agency_id)}", agency=agency_id)
    key_id = f"{agency_id}/local"
    private_path = key_dir / f"{key_file_stem(key_id)}.key"
    if private_path.exists():
        key = load_private_key(private_path.read_bytes())
    else:
        key = new_key_pair(agency_id, key_id)
        write_key_pair(key, key_dir)
    await publish_agencies(settings, [with_key(agency, key.key_id, key.public_key)])
    return key


async def remove_agencies(settings: Settings, agency_ids: Iterable[str]) -> int:
    """Write a tombstone per agency id: its alerts become ``unknown_sender``."""
    producer = make_producer(settings)
    await start_all(producer)
    try:
        sent = [
            await producer.send(settings.agencies_topic, None, key=agency_id.encode())
            for agency_id in agency_ids
        ]
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()


async def read_agencies(settings: Settings) -> AgencyRegistry:
    """The registry as the topic holds it now (for the CLI; workers use the service)."""
    agencies: dict[str, Agency] = {}
    invalid: dict[str, str] = {}
    async for record in read_to_end(settings, settings.agencies_topic):
        if record.key is None:
            continue
        agency_id = record.key.decode("utf-8", "replace")
        agencies.pop(agency_id, None)
        invalid.pop(agency_id, None)
        if record.value is None:
            continue
        try:
            agencies[agency_id] = decode_agency_record(record.key, record.value)
        except Exception as exc:
            invalid[agency_id] = str(exc)
    return AgencyRegistry(MappingProxyType(agencies), MappingProxyType(invalid))
