"""Channel providers: one ``async send(task) -> Outcome`` each (README "Writing a channel").

- :class:`LogChannel` writes one log line per task (demo, drills: ``fail_every``).
- :class:`HttpChannel` POSTs each task as JSON to a provider URL with httpx, the idempotency key
  in an ``Idempotency-Key`` header, and maps the answer: 2xx delivered; 429 retry after its
  ``Retry-After``; 408, 5xx, timeouts and connection errors retry with back-off; any other 4xx
  is a permanent failure (``http_<status>``). A failure for good, permanent or retried until
  ``max_attempts`` ran out, moves the recipient to its next channel.

A channel never raises for a provider's answer: it returns an :class:`Outcome`, so the worker
decides retries, receipts and fallback in one place (:mod:`streams.delivery.policy`).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx
import orjson

from streams.delivery.policy import Outcome

__all__ = ["Channel", "HttpChannel", "LogChannel", "outcome_of_response"]

provider_log = logging.getLogger("loa.deliver.log")


class Channel(Protocol):
    """A provider the delivery worker sends through."""

    name: str

    async def send(self, task: dict[str, Any]) -> Outcome: ...

    async def close(self) -> None: ...


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


class HttpChannel:
    """POST each task as JSON to ``url`` (one shared connection pool)."""

    name = "http"

    def __init__(self, url: str, *, timeout_s: float = 10.0, max_connections: int = 64) -> None:
        self.url = url
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def send(self, task: dict[str, Any]) -> Outcome:
        try:
            response = await self._http.post(
                self.url,
                content=orjson.dumps(task),
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(task["idempotency_key"]),
                },
            )
        except httpx.TimeoutException:
            return Outcome.retry("timeout")
        except httpx.TransportError:  # refused, reset, protocol error: the call may not be seen
            return Outcome.retry("connection")
        return outcome_of_response(response.status_code, response.headers)

    async def close(self) -> None:
        await self._http.aclose()
