"""Directory: the second stage. Who lives where, reachable how, in which language.

``loa.directory.changes`` (compacted; key = recipient id, partition = recipient id mod
partitions) is the source of truth. Each worker replays the partitions it owns into a
:class:`DirectoryPartition`, a columnar index (sorted ``uint64`` ids and small attribute
columns, 25 bytes per subscriber), and keeps it current as changes arrive. Selecting an audience
is one vectorized gather over the ward column, plus a vectorized H3 containment test over the
location column when the alert has polygons or circles.

Guarantee: an order is fanned out only once its partition's index has applied every change
that was in the changes topic when the order was picked up (see ``DirectoryService``).

May import: ``kafkaio``, ``regions`` and the other foundations; not ingest, fan-out or
delivery (they ask the directory, never the other way).
"""

from streams.directory.index import ChangeBatch, DirectoryPartition, Selection
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import decode_changes, encode_subscribers

__all__ = [
    "ChangeBatch",
    "DirectoryPartition",
    "Selection",
    "decode_changes",
    "encode_subscribers",
    "synthetic_subscribers",
]
