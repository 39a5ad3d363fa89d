"""Delivery workers: send tasks -> a channel provider -> receipts (downstream of the fan-out).

Data flow: ``loa.sends.<priority>`` -> [:mod:`streams.delivery.worker`] -> a
:class:`~streams.delivery.channels.Channel` (``log``, ``http``) -> ``loa.sends.receipts``.

- :mod:`streams.delivery.policy` is pure: task validation, the priority buffer (extreme before
  severe before routine), retry and back-off decisions (429 + Retry-After), receipts and channel
  fallback tasks.
- :mod:`streams.delivery.channels` holds the providers; a new channel implements one
  ``async send(task) -> Outcome`` (README "Writing a channel").
- :mod:`streams.delivery.worker` is the I/O shell: consumer group per channel, bounded
  concurrency, small transactions of receipts + offsets, SIGTERM drain, metrics.
"""

from streams.delivery.channels import Channel, HttpChannel, LogChannel
from streams.delivery.policy import DeliveryStats, Outcome
from streams.delivery.worker import deliver

__all__ = ["Channel", "DeliveryStats", "HttpChannel", "LogChannel", "Outcome", "deliver"]
