"""The console's rules (docs/console.md, "Rules") as a table, driven against the real API.

Written from the rules, not from the code: nothing here imports the console's modules. Each row
is (who acts, what they do, whose agency the object is in, who wrote the object) -> the answer:
``ok`` (2xx), ``role`` (403: the user's roles do not allow it), ``second_person`` (403: the
approver wrote or edited the draft), ``404`` (another agency's object: not even its existence
is told).

Users: ``author``, ``approver``, ``viewer`` and ``both`` (author and approver) of Quảng Ngãi;
``ninh`` (author and approver) of Quảng Ninh.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.console_kit import Client, LiveConsole, draft, live_console

pytestmark = pytest.mark.integration

#: actor, action, the object's agency ("same" as the actor's or "other"), its writer -> answer
RULES: list[tuple[str, str, str, str, str]] = [
    # writing: authors only
    ("author", "create", "same", "-", "ok"),
    ("approver", "create", "same", "-", "role"),
    ("viewer", "create", "same", "-", "role"),
    ("author", "edit", "same", "both", "ok"),  # any author of the agency
    ("approver", "edit", "same", "author", "role"),
    ("viewer", "edit", "same", "author", "role"),
    ("ninh", "edit", "other", "author", "404"),
    ("author", "submit", "same", "author", "ok"),
    ("approver", "submit", "same", "author", "role"),
    ("viewer", "submit", "same", "author", "role"),
    ("ninh", "submit", "other", "author", "404"),
    # reading: everyone of the agency, nobody else
    ("viewer", "read_draft", "same", "author", "ok"),
    ("ninh", "read_draft", "other", "author", "404"),
    ("viewer", "preview", "same", "author", "ok"),
    ("approver", "preview", "same", "author", "ok"),
    ("ninh", "preview", "other", "author", "404"),
    ("viewer", "read_alert", "same", "author", "ok"),
    ("ninh", "read_alert", "other", "author", "404"),
    ("viewer", "follow", "same", "author", "ok"),
    ("ninh", "follow", "other", "author", "404"),
    # approving: an approver who did not write it
    ("approver", "approve", "same", "author", "ok"),
    ("both", "approve", "same", "author", "ok"),
    ("both", "approve", "same", "both", "second_person"),
    ("author", "approve", "same", "author", "role"),
    ("viewer", "approve", "same", "author", "role"),
    ("ninh", "approve", "other", "author", "404"),
    ("approver", "return", "same", "author", "ok"),
    ("author", "return", "same", "author", "role"),
    ("viewer", "return", "same", "author", "role"),
    ("ninh", "return", "other", "author", "404"),
    # amending a sent alert: authors of its agency
    ("author", "cancel", "same", "both", "ok"),
    ("both", "update", "same", "author", "ok"),
    ("approver", "update", "same", "author", "role"),
    ("viewer", "cancel", "same", "author", "role"),
    ("ninh", "update", "other", "author", "404"),
    ("ninh", "cancel", "other", "author", "404"),
]

#: the state the object must be in for the action
_NEEDS = {
    "edit": "draft",
    "submit": "draft",
    "read_draft": "draft",
    "preview": "draft",
    "approve": "awaiting",
    "return": "awaiting",
    "read_alert": "sent",
    "follow": "sent",
    "update": "sent",
    "cancel": "sent",
}


@pytest.fixture(scope="module")
async def live(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveConsole]:
    async with live_console(kafka_bootstrap, tmp_path_factory) as live:
        yield live


async def _logged_in(http: aiohttp.ClientSession, live: LiveConsole, user: str) -> Client:
    client = Client(http, live.url)
    assert (await client.login(user)).status == 200
    return client


async def _object(writer: Client, needs: str) -> tuple[str, str]:
    """(draft id, alert id) of a fresh object in the state ``needs``, written by ``writer``."""
    if needs == "sent":  # an Exercise needs no second person: the writer sends it alone
        _, record = await writer.call("POST", "/api/drafts", draft(status="Exercise"))
        _, sent = await writer.call("POST", f"/api/drafts/{record['id']}/submit")
        assert sent["state"] == "sent", sent
        return record["id"], sent["alert_id"]
    status, record = await writer.call("POST", "/api/drafts", draft())
    assert status == 201, record
    if needs == "awaiting":
        _, record = await writer.call("POST", f"/api/drafts/{record['id']}/submit")
        assert record["state"] == "awaiting_approval"
    return record["id"], ""


def _request(action: str, draft_id: str, alert_id: str) -> tuple[str, str, object]:
    return {
        "create": ("POST", "/api/drafts", draft()),
        "edit": ("PUT", f"/api/drafts/{draft_id}", draft(event="Lũ quét (sửa)")),
        "submit": ("POST", f"/api/drafts/{draft_id}/submit", {}),
        "read_draft": ("GET", f"/api/drafts/{draft_id}", None),
        "preview": ("POST", f"/api/drafts/{draft_id}/preview", {}),
        "approve": ("POST", f"/api/drafts/{draft_id}/approve", {}),
        "return": ("POST", f"/api/drafts/{draft_id}/return", {"reason": "Sửa lại"}),
        "read_alert": ("GET", f"/api/alerts/{alert_id}", None),
        "follow": ("GET", f"/api/alerts/{alert_id}/follow", None),
        "update": ("POST", f"/api/alerts/{alert_id}/update", {}),
        "cancel": ("POST", f"/api/alerts/{alert_id}/cancel", {}),
    }[action]


@pytest.mark.parametrize(
    ("actor", "action", "agency", "writer", "answer"), RULES, ids=["-".join(r) for r in RULES]
)
async def test_the_console_answers_as_its_rules_say(
    live: LiveConsole, actor: str, action: str, agency: str, writer: str, answer: str
) -> None:
    async with aiohttp.ClientSession() as http:
        draft_id = alert_id = ""
        if action != "create":
            draft_id, alert_id = await _object(await _logged_in(http, live, writer), _NEEDS[action])
        client = await _logged_in(http, live, actor)
        method, path, body = _request(action, draft_id, alert_id)
        status, got = await client.call(method, path, body)
    if answer == "ok":
        assert 200 <= status < 300, (status, got)
    elif answer == "404":
        assert (status, got["error"]) == (404, "not_found")
    else:
        assert (status, got["error"]) == (403, answer)
