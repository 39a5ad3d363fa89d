"""Ingest: the first stage. Turns one raw inbound record into exactly one decision.

``loa.alerts.inbound`` -> :func:`decide` -> accepted (an :class:`AcceptedAlert` and one
:class:`FanoutOrder` per directory partition) or rejected (a code, a message and the JSON pointer
of the field at fault). The function is pure: no Kafka, no clock except the one passed in.

Guarantee: every inbound record ends as exactly one decision; the agent writes it before it
commits the inbound offset (at least once: a crash between the write and the commit repeats the
decision, which downstream consumers see as the same ``alert_id``).

May import: ``directory.cells`` (H3 arithmetic) and the census replica's counts,
``kafkaio``, ``regions`` and the other foundations; not fan-out or delivery (it writes orders
to their topic).
"""

from streams.ingest.core import Accepted, Decision, Duplicate, Rejected, decide, rejection_record

__all__ = ["Accepted", "Decision", "Duplicate", "Rejected", "decide", "rejection_record"]
