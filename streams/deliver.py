"""``loa deliver``: the reference delivery worker. It lives in :mod:`streams.delivery`; this
module keeps the old import path (``from streams.deliver import deliver``)."""

from __future__ import annotations

from streams.delivery import DeliveryStats, LogChannel, deliver

__all__ = ["DeliveryStats", "LogChannel", "deliver"]
