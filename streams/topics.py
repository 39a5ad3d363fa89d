"""Topic layout policy: replication defaults and how existing topics differ from the settings.

Pure: the Kafka I/O that reads the cluster (broker count, existing topics) and creates topics
calls these. Replication is chosen from the cluster's size unless set: three or more brokers
give replication factor 3 and ``min.insync.replicas=2`` (an ``acks=all`` write survives one
broker loss and is refused, not silently under-replicated, after two); smaller clusters get
what they can hold.

Also the ACLs the layout needs (:func:`acl_bindings`): what ``loa init`` grants the worker,
agency and operator principals of the ``LOA_ACL_*`` settings, the same set as
``deploy/kafka/cluster.sh grant`` writes for its local users (a unit test compares the two).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from streams.settings.model import Settings

__all__ = [
    "CENSUS_MAX_MESSAGE_BYTES",
    "CLUSTER_RESOURCE",
    "AclBinding",
    "AclOperation",
    "PatternType",
    "Replication",
    "ResourceType",
    "TopicLayoutError",
    "TopicShape",
    "acl_bindings",
    "mismatches",
    "partition_mismatches",
    "replication",
]

#: ``max.message.bytes`` of the directory census topic: one record holds a partition's census
#: (``streams.directory.census``; about 4 MB for 10M synthetic subscribers, docs/census.md).
CENSUS_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Replication:
    """Replication of the topics Loa creates."""

    #: replicas per partition
    factor: int
    #: ``min.insync.replicas``: replicas that must have an ``acks=all`` write
    min_insync: int


@dataclass(frozen=True, slots=True)
class TopicShape:
    """What matters of a topic for Loa: its name, partition count and replication factor."""

    name: str
    partitions: int
    replication_factor: int


class TopicLayoutError(ValueError):
    """Settings and cluster disagree (too few brokers, partition counts). Poison: the process
    stops with the message; a retry with the same settings meets the same cluster."""

    retriable = False


def replication(settings: Settings, brokers: int) -> Replication:
    """``LOA_REPLICATION_FACTOR``/``LOA_MIN_INSYNC_REPLICAS``, or the defaults for ``brokers``."""
    factor = settings.replication_factor or (3 if brokers >= 3 else 1)
    if factor > brokers:
        raise TopicLayoutError(
            f"LOA_REPLICATION_FACTOR={factor} but the cluster has {brokers} broker(s)"
        )
    min_insync = settings.min_insync_replicas or (2 if factor >= 3 else 1)
    if min_insync > factor:
        raise TopicLayoutError(
            f"LOA_MIN_INSYNC_REPLICAS={min_insync} exceeds the replication factor {factor}"
        )
    return Replication(factor, min_insync)


def mismatches(wanted: Iterable[TopicShape], existing: Mapping[str, TopicShape]) -> list[str]:
    """One line per existing topic whose partitions or replication differ from ``wanted``."""
    lines = []
    for want in wanted:
        have = existing.get(want.name)
        if have is None:
            continue
        if have.partitions != want.partitions:
            lines.append(
                f"{want.name}: {have.partitions} partitions, settings want {want.partitions}"
            )
        if have.replication_factor != want.replication_factor:
            lines.append(
                f"{want.name}: replication factor {have.replication_factor}, "
                f"settings want {want.replication_factor}"
            )
    return lines


def partition_mismatches(
    wanted: Iterable[TopicShape], existing: Mapping[str, TopicShape]
) -> list[str]:
    """The partition-count lines of :func:`mismatches`, and missing topics: what a worker
    cannot run with (co-partitioning of orders and directory, cursor and task partitions)."""
    lines = []
    for want in wanted:
        have = existing.get(want.name)
        if have is None:
            lines.append(f"{want.name}: missing (run `loa topics create`)")
        elif have.partitions != want.partitions:
            lines.append(
                f"{want.name}: {have.partitions} partitions, LOA_PARTITIONS wants {want.partitions}"
            )
    return lines


# --------------------------------------------------------------------------- ACLs

#: The name of the one CLUSTER resource of an ACL (Kafka's ``kafka-cluster``).
CLUSTER_RESOURCE = "kafka-cluster"


class AclOperation(StrEnum):
    """The operations Loa grants (Kafka's ``AclOperation`` names)."""

    ALL = "ALL"
    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"


class ResourceType(StrEnum):
    """The resources Loa grants on (Kafka's ``ResourceType`` names)."""

    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"
    CLUSTER = "CLUSTER"


class PatternType(StrEnum):
    """How a binding's resource name matches: the name itself, or every name it begins."""

    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One ALLOW ACL, from any host: ``principal`` may do ``operation`` on the resource."""

    #: ``User:name``
    principal: str
    #: what it may do
    operation: AclOperation
    #: the kind of resource
    resource_type: ResourceType
    #: the resource's name (or name prefix); :data:`CLUSTER_RESOURCE` for the cluster
    name: str
    #: LITERAL or PREFIXED
    pattern: PatternType

    def line(self) -> str:
        """``PRINCIPAL OPERATION RESOURCE_TYPE NAME PATTERN_TYPE``, as cluster.sh writes it."""
        return f"{self.principal} {self.operation} {self.resource_type} {self.name} {self.pattern}"


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """Every ACL the ``LOA_ACL_*`` principals need on this layout (none set: empty), in
    cluster.sh's order. Groups and transactional ids share the topic prefix, as in cluster.sh:
    a worker's ``LOA_APP_ID`` must begin with ``LOA_TOPIC_PREFIX``. ValueError when a
    principal setting is unusable (``streams.settings.load`` has refused it already)."""
    p = settings.topic_prefix
    all_, prefixed, literal = AclOperation.ALL, PatternType.PREFIXED, PatternType.LITERAL
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    out: list[AclBinding] = []

    def grant(who: str, op: AclOperation, kind: ResourceType, name: str, pat: PatternType) -> None:
        binding = AclBinding(who, op, kind, name, pat)
        if binding not in out:  # one principal in two roles: each ACL once
            out.append(binding)

    def idempotent(who: str) -> None:
        grant(who, AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_RESOURCE, literal)

    if worker := settings.acl_principal("worker"):
        for kind in (topic, group, txn):
            grant(worker, all_, kind, p, prefixed)
        idempotent(worker)
    for agency, agency_id in settings.acl_agencies:
        grant(agency, AclOperation.WRITE, topic, settings.inbound_topic, literal)
        grant(agency, AclOperation.DESCRIBE, topic, settings.inbound_topic, literal)
        grant(agency, AclOperation.READ, topic, settings.decisions_topic(agency_id), literal)
        idempotent(agency)
    if operator := settings.acl_principal("operator"):
        grant(operator, all_, topic, p, prefixed)
        grant(operator, all_, group, p, prefixed)
        grant(operator, all_, txn, f"{p}-deliver", prefixed)
        grant(operator, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_RESOURCE, literal)
        idempotent(operator)
    return out
