"""The demo's console: the demo agency's users ``author`` and ``approver`` (fresh random
passwords, printed once) and ``loa console`` started beside the demo's worker.

The demo agency is Quảng Ngãi's committee (``pctt.quangngai.gov.vn``, jurisdiction VN-51): its
signing key is made on first use under ``.loa/keys`` and registered with the agency, and the
console signs with it (``LOA_CONSOLE_KEYS_DIR``).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from pathlib import Path

from streams.console.users import Role, User, hash_password, write_users
from streams.demo.localrun import WorkerProcess
from streams.ingest.agency_service import ensure_local_key
from streams.settings.model import Settings

__all__ = ["DEMO_AGENCY", "start_console"]

DEMO_AGENCY = "pctt.quangngai.gov.vn"
KEYS = Path(".loa") / "keys"
_START_S = 60.0


async def _setup(settings: Settings, passwords: dict[str, str]) -> None:
    agencies = Path(settings.resolved_agencies_dir)
    await ensure_local_key(settings, DEMO_AGENCY, KEYS, agencies_path=agencies)
    await write_users(
        settings,
        [
            User(name, DEMO_AGENCY, (Role(name),), hash_password(pw))
            for name, pw in passwords.items()
        ],
    )


def _answers(settings: Settings) -> bool:
    """Does the console's port take a connection yet?"""
    try:
        with socket.create_connection((settings.console_host, settings.console_port), 1):
            return True
    except OSError:
        return False


def start_console(settings: Settings) -> tuple[WorkerProcess, str, dict[str, str]]:
    """Make the demo users, start ``loa console``, wait until it answers: (process, URL,
    password by user)."""
    passwords = {name: secrets.token_urlsafe(12) for name in ("author", "approver")}
    asyncio.run(_setup(settings, passwords))
    process = WorkerProcess(
        settings,
        Path(".loa") / "demo-console.log",
        command=("console",),
        LOA_CONSOLE_KEYS_DIR=str(KEYS.resolve()),
    ).start()
    deadline = time.monotonic() + _START_S
    while process.alive and time.monotonic() < deadline and not _answers(settings):
        time.sleep(0.5)
    if not process.alive:
        raise RuntimeError("loa console stopped: see .loa/demo-console.log")
    return process, f"http://{settings.console_host}:{settings.console_port}/", passwords
