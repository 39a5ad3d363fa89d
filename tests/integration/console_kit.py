"""A live console for the console tests: a live Loa (worker, directory, agencies with keys),
console users, and ``loa console``'s app started in this process on a free port.

Shares nothing with the console's implementation but its entry point (``Console``), the
users' topic record format (written here with the CLI) and the settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streams.console import Console
from streams.ingest.signatures import write_key_pair
from tests.integration.conftest import LiveLoa, live_loa, run_loa

QUANG_NGAI = "pctt.quangngai.gov.vn"
QUANG_NINH = "ubnd.quangninh.gov.vn"
PASSWORD = "a long test password 1"
#: user -> (agency, roles)
USERS = {
    "author": (QUANG_NGAI, ("author",)),
    "approver": (QUANG_NGAI, ("approver",)),
    "both": (QUANG_NGAI, ("author", "approver")),
    "viewer": (QUANG_NGAI, ("viewer",)),
    "ninh": (QUANG_NINH, ("author", "approver")),
}
WARD = "VN-51-21028"


@dataclass
class LiveConsole:
    loa: LiveLoa
    console: Console
    url: str


class Client:
    """One browser: the session cookie (sent by hand: it is Secure, the test serves plain
    HTTP on loopback) and the CSRF token."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.cookie = ""
        self.csrf = ""

    async def login(self, user: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        response = await self.http.post(
            f"{self.url}/api/login", json={"username": user, "password": password}
        )
        if response.status == 200:
            self.cookie = response.cookies["loa_console"].value
            self.csrf = (await response.json())["csrf"]
        return response

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True
    ) -> tuple[int, Any]:
        headers = {"Cookie": f"loa_console={self.cookie}"} if self.cookie else {}
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        async with self.http.request(
            method, f"{self.url}{path}", json=body, headers=headers
        ) as response:
            text = await response.text()
            try:
                data = await response.json(content_type=None) if text else None
            except ValueError:
                data = text
            return response.status, data


def draft(**changes: Any) -> dict[str, Any]:
    """A valid Actual ward alert draft of Quảng Ngãi."""
    doc: dict[str, Any] = {
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Lũ quét",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Likely",
        "category": ["Met"],
        "expires": (datetime.now(UTC) + timedelta(hours=6)).isoformat(timespec="seconds"),
        "infos": [
            {
                "language": "vi-VN",
                "headline": "Cảnh báo lũ quét",
                "description": "Mưa lớn.",
                "instruction": "Di chuyển lên chỗ cao.",
            },
            {"language": "en-US", "headline": "Flash flood warning"},
        ],
        "areas": {"regions": [WARD], "polygons": [], "circles": []},
    }
    doc.update(changes)
    return doc


@contextlib.asynccontextmanager
async def live_console(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, **console_settings: Any
) -> AsyncIterator[LiveConsole]:
    async with live_loa(kafka_bootstrap, tmp_path_factory) as loa:
        keys_dir = Path(tmp_path_factory.mktemp("console-keys"))
        for pair in loa.keys.values():
            write_key_pair(pair, keys_dir)
        password_file = Path(tmp_path_factory.mktemp("pw")) / "password"
        password_file.write_text(PASSWORD + "\n")
        for name, (agency, roles) in USERS.items():
            roles_args = [a for r in roles for a in ("--role", r)]
            code, _, err = await run_loa(
                loa.settings,
                "console",
                "users",
                "add",
                "--agency",
                agency,
                "--user",
                name,
                *roles_args,
                "--password-file",
                str(password_file),
            )
            assert code == 0, err
        settings = replace(
            loa.settings,
            console_keys_dir=str(keys_dir),
            console_login_attempts_per_address=1000,
            **console_settings,
        )
        console = Console(settings)
        port = await console.start(port=0)
        try:
            yield LiveConsole(loa, console, f"http://127.0.0.1:{port}")
        finally:
            await console.stop()
