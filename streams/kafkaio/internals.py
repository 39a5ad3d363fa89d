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
  producer must be replaced, not retried);
* ``aiokafka.protocol.admin.DescribeAclsRequest`` and ``CreateAclsRequest`` (sent with
  ``AIOKafkaClient.send``) for :mod:`streams.kafkaio.acls`: aiokafka's admin client has no ACL
  methods; these classes negotiate the version with the broker (v1: Kafka 4 has no v0);
* ``aiokafka.protocol`` request building blocks (``Request``, ``RequestStruct``, ``Response``,
  ``Schema`` types) for :class:`LeaveGroupV3`: aiokafka sends LeaveGroup v0/v1 only, which
  cannot name a static member, so a static member would otherwise never leave on stop.

:data:`CHECKED_VERSION` is the aiokafka release these were verified against
(``tests/unit/test_wire_recordbatch.py``, ``tests/integration/test_directory.py``).
:func:`internals_supported` is the single switch the raw paths consult.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiokafka
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger(__name__)

try:
    from aiokafka import codec
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.record.default_records import DefaultRecordBatch
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.record.util import calc_crc32c

    _IMPORT_ERROR = ""
except ImportError as exc:  # another release moved them: the raw paths stay off
    codec = AIOKafkaClient = FetchRequest = DefaultRecordBatch = MemoryRecords = None
    CreateAclsRequest = DescribeAclsRequest = None
    calc_crc32c = None
    _IMPORT_ERROR = str(exc)

__all__ = [
    "AIOKAFKA_VERSION",
    "CHECKED_VERSION",
    "AIOKafkaClient",
    "CreateAclsRequest",
    "DefaultRecordBatch",
    "DescribeAclsRequest",
    "FetchRequest",
    "LeaveGroupV3",
    "MemoryRecords",
    "calc_crc32c",
    "check_version",
    "codec",
    "internals_supported",
    "transaction_failed_fatally",
]

#: The installed aiokafka release.
AIOKAFKA_VERSION: Final[str] = aiokafka.__version__
#: The exact aiokafka release the private API above was checked against; pyproject.toml pins
#: the same (``aiokafka==``), so only a deliberate override installs another.
CHECKED_VERSION: Final[str] = "0.14.0"


def check_version(installed: str, import_error: str = "") -> bool:
    """Whether the raw paths may use aiokafka's internals: only on :data:`CHECKED_VERSION` with
    every private name importable. Otherwise one warning says so, and Loa runs on aiokafka's
    public API (``LOA_FANOUT_RAW_BATCHES`` and ``LOA_DIRECTORY_RAW_KAFKA`` act as false)."""
    if installed == CHECKED_VERSION and not import_error:
        return True
    why = f"cannot import them ({import_error})" if import_error else "not checked there"
    log.warning(
        "aiokafka %s is not %s, whose internals Loa's raw record-batch paths use (%s): "
        "those paths are off, Loa uses aiokafka's public API (slower)",
        installed,
        CHECKED_VERSION,
        why,
    )
    return False


_SUPPORTED: Final[bool] = check_version(AIOKAFKA_VERSION, _IMPORT_ERROR)


def internals_supported() -> bool:
    """Whether the raw paths may run (decided once, at import: :func:`check_version`)."""
    return _SUPPORTED


def transaction_failed_fatally(producer: Any) -> bool:
    """Whether a transactional producer is in a fatal state (fenced, unrecoverable): it must be
    stopped and replaced by a new one, a retry on it would fail again."""
    manager = getattr(producer, "_txn_manager", None)
    return bool(manager is not None and manager.is_fatal_error())


class _LeaveGroupResponseV3(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class _LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class LeaveGroupV3(Request[_LeaveGroupRequestV3]):  # type: ignore[misc]  # aiokafka is untyped
    """LeaveGroup v3 (KIP-345) removing static members by ``group.instance.id``, as Kafka's
    admin ``removeMembersFromConsumerGroup`` does (member id left empty)."""

    API_KEY = 13

    def __init__(self, group: str, instance_ids: list[str]) -> None:
        self._group = group
        self._instance_ids = instance_ids

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        return request_struct_class(self._group, [("", i) for i in self._instance_ids])
