"""``loa gateway``: the HTTP door for agencies without a Kafka client.

Where it sits: before ingest. ``POST /v1/alerts`` writes the body (CAP XML or Loa JSON) and
Loa's signature headers to ``loa.alerts.inbound`` exactly as ``loa publish`` does, then answers
with ingest's decision; ``GET /v1/alerts/{alert_id}`` shows what ``loa status`` shows. The
gateway decides nothing about an alert itself: ingest (the one decision path for Kafka and
HTTP alike) does. Modules: :mod:`~streams.gateway.policy` (pure rules),
:mod:`~streams.gateway.decisions` (decisions by inbound offset),
:mod:`~streams.gateway.server` (aiohttp app, TLS, metrics, access log).

May import: ``agency`` (it writes through the same inbound writer as ``loa publish``),
``receipts`` (the decision), ``ingest`` (the agency registry and signatures), ``kafkaio``,
foundations.
"""

from __future__ import annotations

import asyncio
import signal

from streams.gateway.server import Gateway, GatewayMetrics, check_settings
from streams.settings.model import Settings

__all__ = ["Gateway", "GatewayMetrics", "check_settings", "serve"]


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGTERM or SIGINT, then stop it (bounded by aiohttp's shutdown)."""
    gateway = Gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        await gateway.stop()
