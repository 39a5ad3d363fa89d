"""``loa console``: the agency console, a web page where duty officers write, check, preview,
approve, send and follow alerts (issue 23; docs/console.md).

Where it sits: beside the gateway, before ingest. An approved draft becomes a Loa JSON alert,
signed with the agency's key held by this process, written to ``loa.alerts.inbound`` through
:func:`streams.agency.inbound.send_inbound` and judged by ingest like any other alert. Modules:
:mod:`~streams.console.policy` (approval rules), :mod:`~streams.console.sessions` (sessions,
CSRF, login limiter), :mod:`~streams.console.users` (users topic, argon2id),
:mod:`~streams.console.audit` (audit topic), :mod:`~streams.console.drafts` (drafts, checks,
the alert a draft makes), :mod:`~streams.console.web` (headers, errors),
:mod:`~streams.console.server` (aiohttp app).

May import: ``agency`` (inbound writer, preview planning), ``ingest`` (the same rules ingest
applies, agency registry, signatures), ``gateway`` (TLS context, decision follower),
``receipts`` (progress), ``directory`` (census), ``fanout`` (channel limits), ``kafkaio``,
foundations. Nothing imports it but the CLI.
"""

from __future__ import annotations

import asyncio
import signal

from streams.console.server import Console, check_settings
from streams.settings.model import Settings

__all__ = ["Console", "check_settings", "serve"]


async def serve(settings: Settings) -> None:
    """Run the console until SIGTERM or SIGINT, then stop it."""
    console = Console(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await console.start()
    print(
        f"loa console: {'https' if console.https else 'http'}://{settings.console_host}:{port}/",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await console.stop()
