"""Topic layout policy: replication defaults and how existing topics differ from the settings.

Pure: the Kafka I/O that reads the cluster (broker count, existing topics) and creates topics
calls these. Replication is chosen from the cluster's size unless set: three or more brokers
give replication factor 3 and ``min.insync.replicas=2`` (an ``acks=all`` write survives one
broker loss and is refused, not silently under-replicated, after two); smaller clusters get
what they can hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streams.settings import Settings

__all__ = [
    "CENSUS_MAX_MESSAGE_BYTES",
    "Replication",
    "TopicLayoutError",
    "TopicShape",
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
