"""Delivery workers: send tasks -> a channel provider -> receipts (downstream of the fan-out).

Data flow: ``loa.sends.<priority>`` and the retry tiers ``loa.sends.retry.<priority>.<delay>`` ->
[:mod:`streams.delivery.worker`] -> a :class:`~streams.delivery.channels.Channel` (``log``,
``http``, ``smpp``, ``push``) -> ``loa.sends.receipts`` (and retry copies, fallback tasks).

- :mod:`streams.delivery.policy` is pure: task validation, the priority buffer (extreme before
  severe before routine), outcomes, receipts and channel fallback tasks.
- :mod:`streams.delivery.retry` is pure: durable retries on delay-tier topics until the alert
  expires, back-off with full jitter, the fallback budget.
- :mod:`streams.delivery.breaker` is pure: a circuit breaker and a Retry-After gate per
  provider endpoint.
- :mod:`streams.delivery.watermark` is pure: the offsets that may commit while tasks settle
  out of order.
- :mod:`streams.delivery.channels` holds the providers (http with its bulk form; SMPP 3.4 in
  :mod:`~streams.delivery.smpp`, FCM-shaped push in :mod:`~streams.delivery.push`); a new
  channel implements one ``async send(task) -> Outcome`` (docs/channels.md).
- :mod:`streams.delivery.calls`: the calls in flight, each under its own timeout, behind each
  endpoint's admission; :mod:`streams.delivery.ledger`: the records each settled attempt
  writes, held until the offset that covers them; :mod:`streams.delivery.metrics`.
- :mod:`streams.delivery.worker` is the I/O shell: consumer group per channel, the fetch loop,
  transactions of receipts + retries + offsets, recovery from a lost group or producer,
  SIGTERM drain. ``docs/delivery.md`` is the operator's page.

May import: the records and settings it reads, ``kafkaio``, foundations; nothing from
the stages before it (a delivery worker runs on its own, from the send-task topics).
"""

from streams.delivery.channels import Channel, HttpChannel, LogChannel
from streams.delivery.policy import DeliveryStats, Outcome
from streams.delivery.worker import deliver

__all__ = ["Channel", "DeliveryStats", "HttpChannel", "LogChannel", "Outcome", "deliver"]
