"""The console's draft and alert routes (``/api/check``, ``/api/drafts...``, ``/api/alerts...``,
``/api/regions``, ``/api/outlines``): thin handlers over :mod:`.drafts`, :mod:`.policy` and the
:class:`~streams.console.desk.Desk`.

Where it sits: inside ``loa console``, after the middleware authenticated the user and checked
CSRF (:mod:`streams.console.server`). Each handler reads the user's agency from the session and
only ever asks the store for that agency's records (another agency's id is a 404).

Who may do what (docs/console.md, "Rules"): authors create, edit and submit drafts and start
Updates and Cancels; approvers approve or return drafts awaiting approval, and never one they
created or edited themselves (``second_person``); every user of the agency reads its drafts,
alerts, previews and progress. A draft is sent only after it passes ingest's own checks again,
at the moment of sending.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from streams.console.desk import Checked
from streams.console.drafts import Draft, DraftProblems, parse_draft, text_problem
from streams.console.regions import search
from streams.console.users import Role, User
from streams.console.web import STATIC_DIR, json_body, json_response
from streams.errors import ConsoleRefused
from streams.gateway.policy import decision_answer
from streams.ingest import Accepted
from streams.ingest.agencies import Agency, AgencyRegistry
from streams.ingest.signatures import KeyPair

if TYPE_CHECKING:
    from streams.console.server import Console

__all__ = ["add_routes"]

Record = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_EMPTY_OUTLINES = b'{"type":"FeatureCollection","features":[]}'
_EDITABLE = ("draft", "returned")


def add_routes(console: Console) -> None:
    api = _Api(console)
    for method, path, handler in (
        ("GET", "/api/regions", api.regions),
        ("GET", "/api/outlines", api.outlines),
        ("POST", "/api/check", api.check),
        ("GET", "/api/drafts", api.list_drafts),
        ("POST", "/api/drafts", api.audited("draft_create", api.create)),
        ("GET", "/api/drafts/{id}", api.get_draft),
        (
            "PUT",
            "/api/drafts/{id}",
            api.audited("draft_update", api.one_at_a_time(api.update_draft)),
        ),
        ("POST", "/api/drafts/{id}/preview", api.audited("preview", api.preview)),
        ("POST", "/api/drafts/{id}/submit", api.audited("submit", api.one_at_a_time(api.submit))),
        (
            "POST",
            "/api/drafts/{id}/approve",
            api.audited("approve", api.one_at_a_time(api.approve)),
        ),
        ("POST", "/api/drafts/{id}/return", api.audited("return", api.one_at_a_time(api.return_))),
        ("GET", "/api/alerts", api.alerts),
        # alert ids hold "/" (``<sender>/<identifier>``): the suffixed routes come first
        ("GET", "/api/alerts/{alert_id:.+}/follow", api.follow),
        ("POST", "/api/alerts/{alert_id:.+}/update", api.audited("update", api.amend)),
        ("POST", "/api/alerts/{alert_id:.+}/cancel", api.audited("cancel", api.amend)),
        ("GET", "/api/alerts/{alert_id:.+}", api.alert),
    ):
        console.route(method, path, handler)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp() -> str:
    return _now().isoformat(timespec="milliseconds")


def _not_found(what: str) -> ConsoleRefused:
    """One answer for "no such thing" and "another agency's": existence is not confirmed."""
    return ConsoleRefused(404, "not_found", f"no {what} of your agency")


class _Api:
    """Why this long: one handler per route of the contract, each a few lines."""

    def __init__(self, console: Console) -> None:
        self.c = console
        #: draft id -> (its lock, requests holding or waiting for it)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def audited(self, action: str, handler: Handler) -> Handler:
        """A refused action is in the audit trail too (``refused``, with the error code); the
        handler audits its own success."""

        async def audit_refusal(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ConsoleRefused as exc:
                await self.c.audit(
                    self.c.user_of(request),
                    action,
                    "refused",
                    draft_id=request.match_info.get("id", ""),
                    alert_id=request.match_info.get("alert_id", ""),
                    detail=exc.error,
                )
                raise

        return audit_refusal

    def one_at_a_time(self, handler: Handler) -> Handler:
        """Changes of one draft run one after the other: two approvers pressing at once send
        it once (the second finds it ``sent``: 409)."""

        async def serialized(request: web.Request) -> web.StreamResponse:
            draft_id = request.match_info["id"]
            lock, users = self._locks.get(draft_id, (asyncio.Lock(), 0))
            self._locks[draft_id] = (lock, users + 1)
            try:
                async with lock:
                    return await handler(request)
            finally:
                lock, users = self._locks[draft_id]
                if users == 1:
                    del self._locks[draft_id]
                else:
                    self._locks[draft_id] = (lock, users - 1)

        return serialized

    # --- shared steps ------------------------------------------------------------------------

    async def _registry(self) -> AgencyRegistry:
        return await self.c.agencies.ready(timeout_s=10.0)

    async def _agency(self, user: User) -> Agency:
        agency = (await self._registry()).get(user.agency)
        if agency is None:
            raise ConsoleRefused(403, "agency", f"{user.agency} is not in the agency registry")
        return agency

    def _draft(self, request: web.Request, user: User) -> Record:
        record = self.c.drafts.get(request.match_info["id"], user.agency)
        if record is None:
            raise _not_found("draft")
        return record

    def _parse(self, body: object, references: list[str] | None = None) -> Draft:
        try:
            return parse_draft(body, self.c.regions, _now(), references=references or ())
        except DraftProblems as exc:
            raise ConsoleRefused(
                422, "invalid", "the draft has problems", problems=exc.problems
            ) from None

    async def _checked(
        self, draft: Draft, user: User, identifier: str = "console-check"
    ) -> Checked:
        return await self.c.desk.check(
            draft, await self._registry(), user.agency, _now(), identifier=identifier
        )

    async def _must_pass(self, draft: Draft, user: User) -> None:
        checked = await self._checked(draft, user)
        if checked.problems:
            raise ConsoleRefused(
                422, "invalid", "the draft does not pass ingest's checks", problems=checked.problems
            )

    async def _save(self, record: Record) -> Record:
        record["updated_at"] = _stamp()
        return await self.c.drafts.put(self.c.producer, record)

    # --- reference data ---------------------------------------------------------------------

    async def regions(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        query = request.query.get("q", "")[:100]
        try:
            limit = max(1, min(int(request.query.get("limit", "20")), 100))
        except ValueError:
            raise ConsoleRefused(400, "bad_request", "limit is a number") from None
        found = search(self.c.regions, await self._agency(user), query, limit)
        return json_response([e.to_doc() for e in found])

    async def outlines(self, request: web.Request) -> web.StreamResponse:
        path = STATIC_DIR / "vendor" / "vn-provinces.geojson"
        body = path.read_bytes() if path.is_file() else _EMPTY_OUTLINES
        response = web.Response(body=body, content_type="application/geo+json")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    # --- drafts -----------------------------------------------------------------------------

    async def check(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        body = await _body(request)
        try:
            draft = parse_draft(body, self.c.regions, _now(), references=_refs(body))
        except DraftProblems as exc:
            problems = [{"field": f, "message": m} for f, m in exc.problems]
            return json_response({"problems": problems, "warnings": []})
        return json_response((await self._checked(draft, user)).to_doc())

    async def list_drafts(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        state = request.query.get("state")
        found = [
            r
            for r in self.c.drafts.of_agency(user.agency)
            if r.get("state") != "sent" and (state is None or r.get("state") == state)
        ]
        return json_response(found)

    async def create(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.AUTHOR)
        draft = self._parse(await _body(request))
        await self._must_pass(draft, user)
        now = _stamp()
        record: Record = {
            **draft.to_doc(),
            "id": f"d-{secrets.token_hex(8)}",
            "state": "draft",
            "agency": user.agency,
            "author": user.name,
            "editors": [user.name],
            "created_at": now,
        }
        record = await self._save(record)
        await self.c.audit(user, "draft_create", "ok", draft_id=record["id"])
        return json_response(record, 201)

    async def get_draft(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._draft(request, self.c.user_of(request)))

    async def update_draft(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.AUTHOR)
        record = self._draft(request, user)
        if record["state"] not in _EDITABLE:
            raise ConsoleRefused(409, "state", f"a draft in state {record['state']} is not edited")
        draft = self._parse(await _body(request), record.get("references"))
        if draft.msg_type != record["msg_type"]:
            raise ConsoleRefused(
                422,
                "invalid",
                "the message type of a draft stays",
                problems=(("msg_type", f"stays {record['msg_type']}"),),
            )
        await self._must_pass(draft, user)
        editors = list(dict.fromkeys([*record.get("editors", []), user.name]))
        record.update({**draft.to_doc(), "state": "draft", "editors": editors})
        record.pop("return_reason", None)
        record = await self._save(record)
        await self.c.audit(user, "draft_update", "ok", draft_id=record["id"])
        return json_response(record)

    async def preview(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        record = self._draft(request, user)
        draft = self._parse(record, record.get("references"))
        checked = await self._checked(draft, user, f"console.{record['id']}")
        answer = await self.c.desk.preview(checked)
        # what would be signed: only ``sent`` changes, to the moment it is sent
        answer["alert"] = orjson.loads(checked.raw)
        await self.c.audit(
            user, "preview", "ok", draft_id=record["id"], detail=f"reached={answer['reached']}"
        )
        return json_response(answer)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.AUTHOR)
        record = self._draft(request, user)
        if record["state"] not in _EDITABLE:
            raise ConsoleRefused(
                409, "state", f"a draft in state {record['state']} is not submitted"
            )
        draft = self._parse(record, record.get("references"))
        await self._must_pass(draft, user)
        second = self.c.policy.needs_second(user.agency, draft.status, draft.severity)
        if user.name not in record.get("editors", []):
            record["editors"] = [*record.get("editors", []), user.name]
        record["submitted_by"] = user.name
        if second:
            record["state"] = "awaiting_approval"
            record = await self._save(record)
            await self.c.audit(user, "submit", "awaiting_approval", draft_id=record["id"])
            return json_response(record)
        await self.c.audit(user, "submit", "no_approval_needed", draft_id=record["id"])
        return json_response(await self._send(record, draft, user))

    async def approve(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.APPROVER)
        record = self._draft(request, user)
        if record["state"] != "awaiting_approval":
            raise ConsoleRefused(
                409, "state", f"a draft in state {record['state']} is not approved"
            )
        if user.name in record.get("editors", []) or user.name == record.get("author"):
            raise ConsoleRefused(
                403, "second_person", "a second person approves: not the one who wrote or edited it"
            )
        draft = self._parse(record, record.get("references"))
        record["approver"] = user.name
        return json_response(await self._send(record, draft, user, approving=True))

    async def return_(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.APPROVER)
        record = self._draft(request, user)
        if record["state"] != "awaiting_approval":
            raise ConsoleRefused(
                409, "state", f"a draft in state {record['state']} is not returned"
            )
        reason = (await _body(request)).get("reason", "")
        problem = text_problem(reason, 1000, lines=True) if isinstance(reason, str) else "text"
        if problem:
            raise ConsoleRefused(422, "invalid", "the reason", problems=(("reason", problem),))
        record.update(
            {"state": "returned", "return_reason": reason.strip(), "returned_by": user.name}
        )
        record = await self._save(record)
        await self.c.audit(user, "return", "ok", draft_id=record["id"], detail=reason[:200])
        return json_response(record)

    async def _send(
        self, record: Record, draft: Draft, user: User, *, approving: bool = False
    ) -> Record:
        """Check again now, sign with the agency's key, send, store ingest's decision (an
        approval is audited once the draft passed the checks again, just before sending)."""
        key = self._key(user.agency, await self._registry())
        # one identifier per draft: a retried send is ingest's duplicate, not a second alert
        identifier = f"console.{record['id']}"
        checked = await self._checked(draft, user, identifier)
        if checked.problems:
            raise ConsoleRefused(
                422,
                "invalid",
                "the draft no longer passes ingest's checks",
                problems=checked.problems,
            )
        audience = await self.c.desk.preview(checked)
        if approving:
            await self.c.audit(user, "approve", "ok", draft_id=record["id"])
        outcome, decided = await self.c.desk.send(self.c.producer, checked.raw, key)
        lineage = checked.decision.plan.lineage if isinstance(checked.decision, Accepted) else ""
        if outcome == "pending":
            decision = {"outcome": "pending", **decided}
        else:
            decision = decision_answer(
                outcome, decided, int(decided.get("inbound_offset") or -1)
            ).body
        record.update(
            {
                "cap": _loads(checked.raw),
                "decision": decision,
                "alert_id": str(decided.get("alert_id") or lineage),
                "sent_at": _stamp(),
                "audience": {
                    k: audience[k] for k in ("by_province", "by_channel", "cells", "reached")
                },
            }
        )
        if outcome == "rejected":  # the world changed since the check: back to the authors
            record.update({"state": "returned", "return_reason": str(decided.get("message", ""))})
        else:
            record["state"] = "sent"
        record = await self._save(record)
        action = {"Alert": "send", "Update": "update", "Cancel": "cancel"}[draft.msg_type]
        await self.c.audit(
            user, action, outcome, draft_id=record["id"], alert_id=record["alert_id"]
        )
        return record

    def _key(self, agency: str, registry: AgencyRegistry) -> KeyPair:
        registered = registry.get(agency)
        for pair in self.c.keys.get(agency, []):
            if registered is not None and pair.key_id in registered.keys:
                return pair
        raise ConsoleRefused(
            409,
            "no_key",
            f"the console holds no key of {agency} that the registry knows (LOA_CONSOLE_KEYS_DIR)",
        )

    # --- alerts -----------------------------------------------------------------------------

    async def alerts(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        rows = [
            {
                "alert_id": r.get("alert_id"),
                "lineage": r.get("alert_id"),
                "draft_id": r["id"],
                "msg_type": r.get("msg_type"),
                "status": r.get("status"),
                "severity": r.get("severity"),
                "headline": (r.get("infos") or [{}])[0].get("headline", ""),
                "sent_at": r.get("sent_at"),
                "author": r.get("author"),
                "approver": r.get("approver"),
                "decision": r.get("decision"),
                "state": r.get("state"),
            }
            for r in self.c.drafts.of_agency(user.agency)
            if r.get("sent_at")
        ]
        rows.sort(key=lambda row: str(row["sent_at"]), reverse=True)
        return json_response(rows)

    def _sent(self, request: web.Request, user: User) -> list[Record]:
        found = self.c.drafts.sent_of_alert(request.match_info["alert_id"], user.agency)
        if not found:
            raise _not_found("alert")
        return found

    async def alert(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        found = self._sent(request, user)
        return json_response({**found[0], "versions": [r["id"] for r in found]})

    async def follow(self, request: web.Request) -> web.StreamResponse:
        user = self.c.user_of(request)
        latest = self._sent(request, user)[0]
        progress = await self.c.desk.follow(request.match_info["alert_id"])
        audience = latest.get("audience") or {}
        share = progress["delivered"] / progress["tasks"] if progress["tasks"] else 0.0
        progress["by_province"] = {
            code: {"targeted": n, "delivered": round(n * share)}
            for code, n in (audience.get("by_province") or {}).items()
        }
        progress["cells"] = [
            {**cell, "delivered": round(cell["n"] * share)} for cell in audience.get("cells", [])
        ]
        progress["updated_at"] = _stamp()
        return json_response(progress)

    async def amend(self, request: web.Request) -> web.StreamResponse:
        user = self.c.require(request, Role.AUTHOR)
        found = self._sent(request, user)
        msg_type = "Cancel" if request.path.endswith("/cancel") else "Update"
        latest = found[0]
        references = [
            f"{r['cap']['sender']},{r['cap']['identifier']},{r['cap']['sent']}"
            for r in reversed(found)
            if (r.get("decision") or {}).get("outcome") == "accepted"
        ]
        if not references:
            raise ConsoleRefused(409, "state", "this alert was not accepted: nothing to amend")
        now = _stamp()
        keep = (
            "status",
            "event",
            "urgency",
            "severity",
            "certainty",
            "category",
            "expires",
            "infos",
            "areas",
        )
        record: Record = {
            **{k: latest.get(k) for k in keep},
            "msg_type": msg_type,
            "references": references,
            "id": f"d-{secrets.token_hex(8)}",
            "state": "draft",
            "agency": user.agency,
            "author": user.name,
            "editors": [user.name],
            "amends": latest["alert_id"],
            "created_at": now,
        }
        record = await self._save(record)
        await self.c.audit(
            user, msg_type.lower(), "draft", draft_id=record["id"], alert_id=latest["alert_id"]
        )
        return json_response(record, 201)


def _refs(body: Any) -> list[str]:
    """References a checked body carries (``/api/check`` of an Update or Cancel draft)."""
    refs = body.get("references") if isinstance(body, dict) else None
    if isinstance(refs, list) and all(isinstance(r, str) and len(r) < 600 for r in refs):
        return refs[:16]
    return []


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_body(request)


def _loads(raw: bytes) -> Any:
    return orjson.loads(raw)
