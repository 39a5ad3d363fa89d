"""The one door to aiokafka's private internals, and the version they were checked against.

Where it sits: under :mod:`streams.kafkaio.rawkafka` (raw Fetch requests, prebuilt record
batches), :mod:`streams.kafkaio.recordbatch` (record batch v2 read and written column-wise) and
the ingest agent's transaction retry (:func:`transaction_failed_fatally`). Nothing else in Loa
imports from ``aiokafka.client``, ``aiokafka.protocol``, ``aiokafka.record``, ``aiokafka.codec``
or touches a client's underscore attributes; a test scans ``streams/`` for it.

Private API used, all of it listed here so an aiokafka upgrade is checked in one place:

* ``aiokafka.client.AIOKafkaClient``: ``bootstrap``, ``send``, ``cluster``,
  ``_wait_on_metadata``, ``force_metadata_update`` (raw fetches of the directory restore);
* ``aiokafka.protocol.fetch.FetchRequest`` (the same);
* ``aiokafka.record``: ``DefaultRecordBatch``, ``MemoryRecords``, ``calc_crc32c``, and
  ``aiokafka.codec`` (reading batches another writer built, compressed or legacy);
* the producer accumulator's ``BatchBuilder`` protocol (``record_count``, ``_set_producer_state``,
  ``_build``) implemented by :class:`streams.kafkaio.rawkafka.PrebuiltBatch`;
* ``AIOKafkaProducer._txn_manager.is_fatal_error()`` (a fenced or otherwise dead transactional
  producer must be replaced, not retried).

:data:`CHECKED_VERSION` is the aiokafka release these were verified against
(``tests/unit/test_wire_recordbatch.py``, ``tests/integration/test_directory.py``).
:func:`internals_supported` is the single switch the raw paths consult.
"""

from __future__ import annotations

from typing import Any, Final

import aiokafka
from aiokafka import codec
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

__all__ = [
    "AIOKAFKA_VERSION",
    "CHECKED_VERSION",
    "AIOKafkaClient",
    "DefaultRecordBatch",
    "FetchRequest",
    "MemoryRecords",
    "calc_crc32c",
    "codec",
    "internals_supported",
    "transaction_failed_fatally",
]

#: The installed aiokafka release.
AIOKAFKA_VERSION: Final[str] = aiokafka.__version__
#: The aiokafka release line the private API above was checked against.
CHECKED_VERSION: Final[str] = "0.14"


def internals_supported() -> bool:
    """Whether the installed aiokafka is the release line the private API was checked against."""
    return AIOKAFKA_VERSION == CHECKED_VERSION or AIOKAFKA_VERSION.startswith(CHECKED_VERSION + ".")


def transaction_failed_fatally(producer: Any) -> bool:
    """Whether a transactional producer is in a fatal state (fenced, unrecoverable): it must be
    stopped and replaced by a new one, a retry on it would fail again."""
    manager = getattr(producer, "_txn_manager", None)
    return bool(manager is not None and manager.is_fatal_error())
