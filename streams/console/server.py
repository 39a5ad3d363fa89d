"""``loa console``'s aiohttp application: the page, the static files and the ``/api/`` routes.

Where it sits: beside the gateway, before ingest. The console holds the agencies' signing keys
and writes approved alerts to the inbound topic exactly as ``loa publish`` does; ingest decides
on them like on any other alert. Handlers are thin: they authenticate (session cookie, CSRF
header, roles read live from ``<prefix>.console.users``), call the pure core (:mod:`.drafts`,
:mod:`.policy`, :mod:`.sessions`) or the workflow (:mod:`.workflow`), audit, and answer JSON
(``/work/briefs/console-api.md``, copied into docs/console.md).

Guarantee: every request gets a status code; every action is audited before it is answered; a
user never sees or touches another agency's drafts or alerts (404, as if they did not exist).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.console.api import add_routes
from streams.console.audit import AuditEvent, write_audit
from streams.console.desk import Desk, load_keys
from streams.console.policy import ApprovalPolicy, parse_policy
from streams.console.sessions import LoginLimiter, Session, Sessions
from streams.console.store import DraftStore
from streams.console.users import Role, User, decode_user, verify_login
from streams.console.web import (
    COOKIE,
    CSRF_HEADER,
    MAX_BODY,
    STATIC_CACHE,
    STATIC_DIR,
    error_response,
    json_body,
    json_response,
    security_headers,
)
from streams.errors import ConfigUnusable, ConsoleRefused
from streams.gateway.server import tls_context
from streams.ingest.agency_service import AgencyRegistryService
from streams.kafkaio.clients import make_producer
from streams.kafkaio.replica import CompactedReplica
from streams.regions import registry
from streams.settings.model import Settings

__all__ = ["Console", "check_settings"]

log = logging.getLogger("loa.console")

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: How long a request waits for the users/agencies replicas to catch up.
_STATE_WAIT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SESSION = web.RequestKey("session", Session)
_USER = web.RequestKey("user", User)


def check_settings(settings: Settings) -> ApprovalPolicy:
    """Fail closed: TLS off loopback, usable TLS files, a parsable approval policy."""
    if bool(settings.gateway_tls_cert) != bool(settings.gateway_tls_key):
        raise ValueError("LOA_GATEWAY_TLS_CERT and LOA_GATEWAY_TLS_KEY go together")
    if not settings.gateway_tls_cert and settings.console_host not in _LOOPBACK:
        raise ValueError(
            f"LOA_CONSOLE_HOST={settings.console_host} is not loopback: set LOA_GATEWAY_TLS_CERT"
            " and LOA_GATEWAY_TLS_KEY (the console serves plain HTTP on loopback only)"
        )
    return parse_policy(settings.console_approval)


class Console:
    """The console's state (replicas, producer, sessions, limiter) and its aiohttp app.

    Why this long: one class owns the process's state and every route handler reads it; the
    rules themselves live in the pure modules beside it."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.policy = check_settings(settings)
        self.https = bool(settings.gateway_tls_cert)
        self.clock = clock
        self.sessions = Sessions(settings.console_session_idle_s)
        self.limiter = LoginLimiter(
            settings.console_login_attempts,
            settings.console_login_attempts_per_address,
            settings.console_login_window_s,
        )
        self.agencies = AgencyRegistryService(settings)
        self.users: CompactedReplica[User] = CompactedReplica(
            settings, settings.console_users_topic, partitions=1, decode=decode_user, name="users"
        )
        self.regions = registry()
        self.desk = Desk(settings, self.regions)
        self.drafts = DraftStore(settings)
        #: the agencies' signing keys (LOA_CONSOLE_KEYS_DIR), read once at start
        self.keys = load_keys(settings.console_keys_dir)
        self._headers = security_headers(settings.console_tile_url, self.https)
        self._producer: AIOKafkaProducer | None = None
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, str, Handler]] = []
        add_routes(self)

    # --- life cycle -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._middleware])
        app.router.add_get("/", self.index)
        if STATIC_DIR.is_dir():
            app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/api/me", self.me)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        return app

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Add an API route (before :meth:`start`): the drafts and alerts routes use it."""
        self._routes.append((method, path, handler))

    async def start(self, *, port: int | None = None) -> int:
        """Connect to Kafka, check the policy against the registry, then serve; the port."""
        self._producer = make_producer(self.settings)
        await self._producer.start()
        await self.agencies.start()
        await self.users.start()
        registry = await self.agencies.ready(timeout_s=self.settings.agencies_catchup_timeout_s)
        try:
            self.policy.check_agencies(registry.agencies)
        except ValueError as exc:  # fail closed: a rule for nobody would approve nothing
            await self.stop()
            raise ConfigUnusable(str(exc), hint="fix LOA_CONSOLE_APPROVAL") from None
        await self.users.ready(timeout_s=self.settings.agencies_catchup_timeout_s)
        await self.desk.start()
        await self.drafts.start()
        await self.drafts.ready()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.create_server(
            (self.settings.console_host, self.settings.console_port if port is None else port)
        )
        bound = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=tls_context(self.settings)).start()
        log.info("console on %s:%d", self.settings.console_host, bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.drafts.stop()
        await self.desk.stop()
        await self.users.stop()
        await self.agencies.stop()
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "console not started"
        return self._producer

    # --- middleware: headers, errors, authentication, CSRF ---------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/api/") and request.path != "/api/login":
                await self._authenticate(request)
            response = await handler(request)
        except ConsoleRefused as exc:
            response = error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(
                ConsoleRefused(413, "too_large", f"the body is over {MAX_BODY} bytes")
            )
        except web.HTTPException as exc:
            if not request.path.startswith("/api/"):
                exc.headers.update(self._headers)
                raise
            code = exc.reason.lower().replace(" ", "_")
            response = error_response(ConsoleRefused(exc.status, code, exc.reason))
        except Exception:  # a bug: still a status code, and the traceback in the log
            log.exception("console request failed: %s %s", request.method, request.path)
            response = error_response(ConsoleRefused(500, "internal", "internal error"))
        response.headers.update(self._headers)
        if request.path.startswith("/static/") and response.status == 200:
            # vendored libraries never change under one name; the page's own files do
            vendor = request.path.startswith("/static/vendor/")
            response.headers["Cache-Control"] = STATIC_CACHE if vendor else "no-cache"
        return response

    async def _authenticate(self, request: web.Request) -> None:
        session = self.sessions.get(request.cookies.get(COOKIE), self.clock())
        if session is None:
            raise ConsoleRefused(401, "login", "log in first")
        user = self.users.items().get(session.user.encode())
        if user is None or user.disabled or user.agency != session.agency:
            self.sessions.close(session.id)
            raise ConsoleRefused(401, "login", "log in again")
        if request.method not in _SAFE_METHODS and not Sessions.csrf_ok(
            session, request.headers.get(CSRF_HEADER)
        ):
            raise ConsoleRefused(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
        request[_SESSION] = session
        request[_USER] = user

    # --- helpers for handlers --------------------------------------------------------------

    @staticmethod
    def user_of(request: web.Request) -> User:
        return request[_USER]

    @staticmethod
    def require(request: web.Request, role: Role) -> User:
        user = request[_USER]
        if role not in user.roles:
            raise ConsoleRefused(403, "role", f"this needs the {role.value} role")
        return user

    async def audit(
        self, user: User | str | None, action: str, outcome: str, **fields: str
    ) -> None:
        """Append one action to the audit topic (``user`` a name when nobody is logged in)."""
        event = AuditEvent(
            action=action,
            user=user.name if isinstance(user, User) else user or "",
            agency=user.agency if isinstance(user, User) else "",
            outcome=outcome,
            **fields,
        )
        await write_audit(self.producer, self.settings, event)

    def _me(self, user: User, session: Session) -> dict[str, Any]:
        return {
            "user": user.name,
            "agency": user.agency,
            "roles": [r.value for r in user.roles],
            "csrf": session.csrf,
            "lang": user.lang,
            "tile_url": self.settings.console_tile_url,
        }

    # --- routes -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise web.HTTPNotFound(text="the console's page is not built (deploy/console)")
        response = web.FileResponse(page)
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        name, password = body.get("username"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ConsoleRefused(400, "bad_request", "username and password are strings")
        name = name[:128]
        address = request.remote or "-"
        now = self.clock()
        wait = self.limiter.wait(name, address, now)
        if wait > 0:
            await self.audit(name, "login", "rate_limited", detail=address)
            raise ConsoleRefused(
                429,
                "rate_limited",
                "too many failed logins: wait and try again",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        await self.users.ready(timeout_s=_STATE_WAIT_S)
        users = {k.decode(): v for k, v in self.users.items().items()}
        user = verify_login(users, name, password)
        if user is None:
            self.limiter.failed(name, address, now)
            await self.audit(name, "login", "failed", detail=address)
            raise ConsoleRefused(401, "login", "wrong user name or password")
        self.limiter.succeeded(name)
        session = self.sessions.open(user.name, user.agency, now)
        await self.audit(user, "login", "ok", detail=address)
        response = json_response(self._me(user, session))
        response.set_cookie(
            COOKIE, session.id, httponly=True, secure=True, samesite="Strict", path="/"
        )
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        user, session = request[_USER], request[_SESSION]
        self.sessions.close(session.id)
        await self.audit(user, "logout", "ok")
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._me(request[_USER], request[_SESSION]))
