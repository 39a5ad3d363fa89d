"""Fan-out: the third stage. Orders (an alert's share of one directory partition) in, one
send task per selected recipient out, on ``loa.sends.<priority>``.

Read top to bottom: :mod:`streams.fanout.plan` selects the audience from the columnar directory
and decides who gets which task (lineage dedup, caps); :mod:`streams.fanout.encode` encodes the
tasks chunk by chunk with numpy; :mod:`streams.fanout.queue` keeps the orders of each owned
partition and picks the most urgent (pure); :mod:`streams.fanout.throttle` paces channels;
:mod:`streams.fanout.partitions` holds the owned partitions (fencing producer, restored
queue; taken only through :mod:`streams.kafkaio.ownership`); :mod:`streams.fanout.scheduler` runs
their
orders chunk by chunk, retrying Kafka errors and ending poison orders as ``failed``;
:mod:`streams.fanout.emitter` writes each chunk as record batches inside a Kafka transaction
with the order's cursor (one ``send_batch`` per ~1 MB, never one awaited send per recipient).

Send tasks of directory partition ``p`` go to partition ``p`` of the send-task topic (both have
``LOA_PARTITIONS`` partitions and recipients are partitioned by ``recipient_id mod
partitions``), so a chunk fills one producer batch at a time.

Guarantee: exactly once for ``read_committed`` consumers of the send-task topics (a chunk and
its cursor commit atomically; a resumed order continues after the cursor). Non-transactional
readers may see tasks of aborted chunks again; they drop them by ``idempotency_key``
(``<alert_id>:<version>:<kind>:<recipient_id>``).

May import: ``directory`` (the audience), ``kafkaio``, foundations; not ingest (orders
arrive on their topic) or delivery.
"""

from streams.fanout.encode import TaskEncoder
from streams.fanout.plan import select_audience

__all__ = ["TaskEncoder", "select_audience"]
