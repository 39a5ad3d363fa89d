"""Fan-out: the third stage. One order (an alert's share of one directory partition) in,
one send task per selected recipient out, on ``loa.sends.<priority>``.

The core (:mod:`streams.fanout.encode`) selects the audience from the columnar directory and
encodes send tasks chunk by chunk with numpy; :mod:`streams.fanout.emitter` appends them to
aiokafka record batches and sends whole batches (one request per ~1 MB), never one awaited
send per recipient.

Send tasks of directory partition ``p`` go to partition ``p`` of the send-task topic (both have
``LOA_PARTITIONS`` partitions and recipients are partitioned by ``recipient_id mod
partitions``), so one order fills one producer batch at a time.

Guarantee (this version): at least once. Every selected recipient gets a task; a worker that
dies mid-order repeats the order from its start when it comes back, and delivery workers drop
the repeats by ``idempotency_key`` (``<alert_id>:<version>:<kind>:<recipient_id>``).
"""

from streams.fanout.encode import TaskEncoder, select_audience

__all__ = ["TaskEncoder", "select_audience"]
