"""Channel providers: one ``async send(task) -> Outcome`` each (docs/channels.md).

- :class:`LogChannel` writes one log line per task (demo, drills: ``fail_every``).
- :class:`HttpChannel` POSTs each task as JSON to a provider URL (aiohttp, :class:`JsonPoster`),
  the idempotency key
  in an ``Idempotency-Key`` header, and maps the answer: 2xx delivered; 429 retry after its
  ``Retry-After``; 408, 5xx, timeouts and connection errors retry with back-off; any other 4xx
  is a permanent failure (``http_<status>``), which moves the recipient to its next channel
  at once.

A channel never raises for a provider's answer: it returns an :class:`Outcome`, so the worker
decides retries, receipts and fallback in one place (:mod:`streams.delivery.retry`). A channel
may name its ``endpoint`` (the http channel: scheme, host and port of its URL): circuits and
Retry-After are kept per endpoint (:mod:`streams.delivery.breaker`); without one, per channel.

The http channel's options: :func:`check_url` refuses anything but an absolute ``http``/``https``
URL with a host (fail closed: ``ftp://x`` would otherwise fail every task the same way);
:func:`http_options` reads bearer or basic credentials from files (``LOA_DELIVERY_HTTP_*``,
like ``LOA_SASL_PASSWORD_FILE``), a CA bundle and a client certificate from the settings.
The protocol channels live in their own modules: :mod:`streams.delivery.smpp` (SMS over SMPP
3.4) and :mod:`streams.delivery.push` (FCM HTTP v1). :func:`make_channel` builds any of them
from ``loa deliver``'s ``--provider``/``--url`` and the settings, refusing a bad option before
anything runs (ValueError naming it).

aiohttp logs nothing per call: the worker's log stays one line per event, not per call.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson

from streams.delivery.policy import Outcome
from streams.settings.model import Settings

__all__ = [
    "BatchChannel",
    "Channel",
    "HttpChannel",
    "LogChannel",
    "bulk_key",
    "check_channel_options",
    "check_smpp_url",
    "check_url",
    "http_options",
    "make_channel",
    "outcome_of_bulk",
    "outcome_of_response",
]

provider_log = logging.getLogger("loa.deliver.log")


class Channel(Protocol):
    """A provider the delivery worker sends through.

    A channel whose provider takes several tasks per call also has ``batch`` (tasks per call at
    most) and ``async send_many(tasks) -> list[Outcome]`` (one outcome per task, in order); the
    worker then starts one call per up to ``batch`` buffered tasks (:data:`BatchChannel`).
    """

    name: str

    async def send(self, task: dict[str, Any]) -> Outcome: ...

    async def close(self) -> None: ...


class BatchChannel(Channel, Protocol):
    """A :class:`Channel` that sends up to ``batch`` tasks in one call."""

    batch: int

    async def send_many(self, tasks: Sequence[dict[str, Any]]) -> list[Outcome]: ...


class LogChannel:
    """The ``log`` provider: logs each task; every ``fail_every``-th task fails (drills)."""

    name = "log"

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self._n = 0

    async def send(self, task: dict[str, Any]) -> Outcome:
        self._n += 1
        if self.fail_every and self._n % self.fail_every == 0:
            return Outcome.failed("simulated")
        provider_log.info(
            "deliver %s to %s via %s (%s)",
            task["idempotency_key"],
            task["recipient_id"],
            task["channel"],
            task["language"],
        )
        return Outcome.delivered()

    async def close(self) -> None:
        return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date or garbage falls back to back-off)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, 300.0)


def outcome_of_response(status: int, headers: Any) -> Outcome:
    """The outcome an HTTP status means (pure: unit-tested without a server)."""
    if 200 <= status < 300:
        return Outcome.delivered()
    if status == 429:
        return Outcome.retry("rate_limited", _retry_after(headers.get("retry-after")))
    if status == 408 or status >= 500:
        return Outcome.retry(f"http_{status}", _retry_after(headers.get("retry-after")))
    return Outcome.failed(f"http_{status}")


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; ValueError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: the provider URL must be http:// or https:// with a host")
    if port == 0:
        raise ValueError(f"{url!r}: port 0")
    return url


def _first_line(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        raise ValueError(f"{what}={path}: cannot read a secret") from None


def http_options(settings: Settings) -> dict[str, Any]:
    """:class:`HttpChannel` keyword arguments from ``LOA_DELIVERY_HTTP_*`` (ValueError naming
    the variable when a file cannot be read or two kinds of auth are set)."""
    s = settings
    if s.delivery_http_bearer_token_file and s.delivery_http_username:
        raise ValueError("set LOA_DELIVERY_HTTP_BEARER_TOKEN_FILE or ..._USERNAME, not both")
    if bool(s.delivery_http_username) != bool(s.delivery_http_password_file):
        raise ValueError("LOA_DELIVERY_HTTP_USERNAME and ..._PASSWORD_FILE go together")
    if s.delivery_http_key_file and not s.delivery_http_cert_file:
        raise ValueError("LOA_DELIVERY_HTTP_KEY_FILE needs LOA_DELIVERY_HTTP_CERT_FILE")
    options: dict[str, Any] = {}
    if s.delivery_http_bearer_token_file:
        token = _first_line(
            s.delivery_http_bearer_token_file, "LOA_DELIVERY_HTTP_BEARER_TOKEN_FILE"
        )
        options["bearer_token"] = token
    if s.delivery_http_username:
        password = _first_line(s.delivery_http_password_file, "LOA_DELIVERY_HTTP_PASSWORD_FILE")
        options["basic_auth"] = (s.delivery_http_username, password)
    if s.delivery_http_ca_file or s.delivery_http_cert_file:
        try:
            context = ssl.create_default_context(cafile=s.delivery_http_ca_file or None)
            if s.delivery_http_cert_file:
                context.load_cert_chain(s.delivery_http_cert_file, s.delivery_http_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"LOA_DELIVERY_HTTP_CA_FILE/CERT_FILE/KEY_FILE: {exc}") from None
        options["verify"] = context
    return options


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's HTTP answer: status, headers (case-insensitive ``get``), body."""

    status: int
    headers: Any
    body: bytes


class JsonPoster:
    """POSTs JSON to one provider over one aiohttp connection pool (``max_connections``).

    aiohttp, not httpx: httpcore's pool scans every connection and waiter on each request and
    answer, milliseconds of CPU per call at hundreds of connections, which starved the worker's
    event loop until its Kafka session and transaction expired (docs/delivery.md, Benchmark).
    A timeout is the call's own; a refused, reset or failed TLS connection is ``None`` with the
    reason ``connection``, the other failures ``timeout``.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        max_connections: int,
        basic_auth: tuple[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        #: RFC 7617 credentials, sent with every call (aiohttp's BasicAuth is deprecated)
        self._authorization = (
            "Basic " + base64.b64encode(":".join(basic_auth).encode("utf-8")).decode("ascii")
            if basic_auth is not None
            else None
        )
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running loop, at the first call
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    ssl=self._verify if isinstance(self._verify, ssl.SSLContext) else True,
                ),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer | str:
        """The answer, or the reason there is none (``timeout``, ``connection``)."""
        if self._authorization is not None:
            headers = {**headers, "Authorization": self._authorization}
        try:
            async with self._session_now().post(url, data=body, headers=headers) as response:
                return Answer(response.status, response.headers, await response.read())
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError):  # the call may not have been seen
            return "connection"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpChannel:
    """POST tasks as JSON to ``url`` (one shared connection pool).

    ``batch`` 1: one POST per task, the task as the body and its key in ``Idempotency-Key``.
    ``batch`` > 1: the bulk form many mass-messaging APIs offer, one POST of ``{"messages":
    [task, ...]}`` (up to ``batch``; each message carries its ``idempotency_key``) answered
    with ``{"results": [{"status": 200}, {"status": 429, "retry_after": 2}, ...]}``, one per
    message in order, each mapped like a single call's status (:func:`outcome_of_bulk`).
    ``bearer_token`` or ``basic_auth`` authenticate each call; ``verify`` is an SSL context (a
    CA bundle, a client certificate) or ``True`` for the system's trust store.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 64,
        batch: int = 1,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = check_url(url)
        if not 1 <= batch <= 1_000:
            raise ValueError(f"batch {batch}: tasks per call must be 1..1000")
        self.batch = batch
        parts = urlsplit(url)
        self.endpoint = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._headers = {"Content-Type": "application/json"}
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = JsonPoster(
            timeout_s=timeout_s,
            max_connections=max_connections,
            basic_auth=basic_auth,
            verify=verify,
        )

    async def send(self, task: dict[str, Any]) -> Outcome:
        answer = await self._http.post(
            self.url,
            orjson.dumps(task),
            {**self._headers, "Idempotency-Key": str(task["idempotency_key"])},
        )
        if isinstance(answer, str):
            return Outcome.retry(answer)
        return outcome_of_response(answer.status, answer.headers)

    async def send_many(self, tasks: Sequence[dict[str, Any]]) -> list[Outcome]:
        """One bulk call for ``tasks``: an outcome per task, in order."""
        if len(tasks) == 1 and self.batch == 1:
            return [await self.send(tasks[0])]
        answer = await self._http.post(
            self.url,
            orjson.dumps({"messages": tasks}),
            {**self._headers, "Idempotency-Key": bulk_key(tasks)},
        )
        if isinstance(answer, str):
            return [Outcome.retry(answer)] * len(tasks)
        return outcome_of_bulk(answer, len(tasks))

    async def close(self) -> None:
        await self._http.close()


def bulk_key(tasks: Sequence[dict[str, Any]]) -> str:
    """The ``Idempotency-Key`` of a bulk call: a digest of its messages' keys, so a proxy that
    drops repeated requests can; the provider's dedup is per message (each carries its key)."""
    keys = "\n".join(str(t["idempotency_key"]) for t in tasks).encode("utf-8")
    return "bulk-" + hashlib.blake2b(keys, digest_size=16).hexdigest()


def outcome_of_bulk(answer: Answer, n: int) -> list[Outcome]:
    """The outcomes of a bulk call of ``n`` messages (pure). A status other than 2xx applies to
    every message; a 2xx must list ``n`` results, else every message is retried
    (``bad_answer``: which ones the provider took is unknown, and their keys make a repeat
    harmless)."""
    if not 200 <= answer.status < 300:
        return [outcome_of_response(answer.status, answer.headers)] * n
    try:
        results = orjson.loads(answer.body)["results"]
        if not isinstance(results, list) or len(results) != n:
            raise ValueError("results")
        return [_bulk_outcome(result) for result in results]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return [Outcome.retry("bad_answer")] * n


def _bulk_outcome(result: Any) -> Outcome:
    status = result["status"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("status")
    after = result.get("retry_after")
    return outcome_of_response(status, {} if after is None else {"retry-after": str(after)})


def check_smpp_url(url: str) -> tuple[str, int]:
    """(host, port) of ``smpp://host:port`` (port 2775 when absent); ValueError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or 2775
    except ValueError:
        raise ValueError(f"{url!r} is not a URL") from None
    if parts.scheme != "smpp" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: the SMSC must be smpp://host:port")
    return parts.hostname, port


PROVIDERS = ("log", "http", "smpp", "push")


def check_channel_options(provider: str, url: str | None, settings: Settings) -> None:
    """Refuse ``provider``'s options before anything runs (ValueError naming the option or
    setting): the URL's form, credentials in files that can be read, the CA and certificate."""
    s = settings
    if provider == "log":
        return
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    if not url:
        raise ValueError(f"--provider {provider} needs --url")
    if provider == "smpp":
        check_smpp_url(url)
        if not s.delivery_smpp_system_id or not s.delivery_smpp_password_file:
            raise ValueError(
                "--provider smpp needs LOA_DELIVERY_SMPP_SYSTEM_ID and ..._PASSWORD_FILE"
            )
        _first_line(s.delivery_smpp_password_file, "LOA_DELIVERY_SMPP_PASSWORD_FILE")
        return
    check_url(url)
    http_options(s)
    if provider == "push":
        if not s.delivery_push_project or "/" in s.delivery_push_project:
            raise ValueError("--provider push needs LOA_DELIVERY_PUSH_PROJECT (one path segment)")
        if not s.delivery_push_token_file:
            raise ValueError("--provider push needs LOA_DELIVERY_PUSH_TOKEN_FILE")
        _first_line(s.delivery_push_token_file, "LOA_DELIVERY_PUSH_TOKEN_FILE")


def make_channel(
    provider: str,
    url: str | None,
    settings: Settings,
    *,
    timeout_s: float = 10.0,
    max_connections: int = 64,
    fail_every: int = 0,
) -> Channel:
    """The channel ``loa deliver --provider`` names, its options checked (fail closed:
    ValueError naming the option or setting). ``url``: http: the URL tasks are POSTed to;
    push: the API's base URL (``https://fcm.googleapis.com``); smpp: ``smpp://host:port``."""
    check_channel_options(provider, url, settings)
    if provider == "log" or not url:
        return LogChannel(fail_every)
    s = settings
    if provider == "http":
        return HttpChannel(
            url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            batch=s.delivery_http_batch,
            **http_options(s),
        )
    from streams.delivery.content import AlertContent

    content = AlertContent(s)
    if provider == "smpp":
        from streams.delivery.smpp import SmppChannel

        host, port = check_smpp_url(url)
        password = _first_line(s.delivery_smpp_password_file, "LOA_DELIVERY_SMPP_PASSWORD_FILE")
        return SmppChannel(
            host,
            port,
            s.delivery_smpp_system_id,
            password,
            content.sms_text,
            source_addr=s.delivery_smpp_source_addr,
            address_template=s.delivery_smpp_address_template,
            window=s.delivery_smpp_window,
            enquire_link_s=s.delivery_smpp_enquire_link_s,
            response_timeout_s=timeout_s,
            reconnect_cap_s=s.delivery_smpp_reconnect_cap_s,
            throttle_pause_s=s.delivery_smpp_throttle_pause_s,
            registered_delivery=s.delivery_smpp_receipts,
            max_segments=s.delivery_smpp_max_segments,
        )
    if provider == "push":
        from streams.delivery.push import PushChannel

        tls = http_options(s).get("verify", True)  # the CA file applies to push too
        return PushChannel(
            url,
            s.delivery_push_project,
            s.delivery_push_token_file,
            content.message,
            device_token_template=s.delivery_push_device_token_template,
            timeout_s=timeout_s,
            max_connections=max_connections,
            verify=tls,
        )
    raise ValueError(f"unknown provider {provider!r}")
