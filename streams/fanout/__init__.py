"""Fan-out: the third stage. Orders (an alert's share of one directory partition) in, one
send task per selected recipient out, on ``loa.sends.<priority>``.

The core (:mod:`streams.fanout.encode`) selects the audience from the columnar directory and
encodes send tasks chunk by chunk with numpy; :mod:`streams.fanout.throttle` paces channels;
:mod:`streams.fanout.scheduler` keeps the orders of the owned partitions, picks the most urgent
one, and appends each chunk to aiokafka record batches inside a Kafka transaction with the
order's cursor (one ``send_batch`` per ~1 MB, never one awaited send per recipient).

Send tasks of directory partition ``p`` go to partition ``p`` of the send-task topic (both have
``LOA_PARTITIONS`` partitions and recipients are partitioned by ``recipient_id mod
partitions``), so a chunk fills one producer batch at a time.

Guarantee: exactly once for ``read_committed`` consumers of the send-task topics (a chunk and
its cursor commit atomically; a resumed order continues after the cursor). Non-transactional
readers may see tasks of aborted chunks again; they drop them by ``idempotency_key``
(``<alert_id>:<version>:<kind>:<recipient_id>``).
"""

from streams.fanout.encode import TaskEncoder, select_audience

__all__ = ["TaskEncoder", "select_audience"]
