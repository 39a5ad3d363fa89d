"""Push notifications in the shape of FCM HTTP v1: the ``push`` channel.

Data flow: send task (channel ``push``) -> [delivery worker] -> :class:`PushChannel` ->
``POST {base}/v1/projects/{project}/messages:send`` -> the task's
:class:`~streams.delivery.policy.Outcome`.

Request (one per task)::

    Authorization: Bearer <first line of LOA_DELIVERY_PUSH_TOKEN_FILE>
    {"message": {"token": <device token>,
                 "notification": {"title": <headline>, "body": <instruction or description>},
                 "data": {"alert_id", "version", "kind", "priority", "idempotency_key"},
                 "android": {"priority": "high", "ttl": "<seconds until expires>s",
                             "notification": {"tag": <key digest>}},
                 "apns": {"headers": {"apns-priority": "10", "apns-expiration": <expires>,
                                      "apns-collapse-id": <key digest>}}}}

- **Device token**: the directory holds no device tokens (it is a directory of people, not of
  apps); the token is ``LOA_DELIVERY_PUSH_DEVICE_TOKEN_TEMPLATE`` rendered with the task's
  ``recipient_id`` (default ``{recipient_id}``): a deployment whose app registers under the
  recipient id, or a push gateway that resolves it, works as is; a token registry is a later
  step.
- **Credential**: an OAuth 2 access token in a file, re-read when the file changes (checked at
  most once a second), so an outside refresher (a service-account token is good for an hour)
  rotates it without a restart.
- **Payload limit**: FCM refuses a message whose payload is over 4096 bytes. Loa keeps the
  JSON of ``notification`` plus ``data`` within 4096 bytes: the body is cut at its last
  whole word that fits and ends with ``…``; if the title alone is too long it is cut the same
  way (:func:`fit_payload`). Nothing else is dropped.
- **Repeats**: FCM has no idempotency key. The message sets ``android.notification.tag`` and
  ``apns-collapse-id`` to a digest of the task's key, so a repeat of the same task replaces the
  notification still shown instead of adding a second one (a dismissed one shows again).

Answers (FCM's documented errors; ``error.status`` and ``details[].errorCode`` of the body):

========================================  =====================================================
200                                       delivered (to FCM)
400 INVALID_ARGUMENT                      failed ``push_invalid_argument`` (next channel)
404 UNREGISTERED / NOT_FOUND              failed ``push_unregistered``: the device token is gone
                                          (app uninstalled or token expired)
403 SENDER_ID_MISMATCH                    failed ``push_sender_id_mismatch`` (token of another
                                          project)
401, other 403 (credential wrong/expired) retry ``push_credential_<status>``: a circuit failure,
                                          so the endpoint's circuit opens and probes; the
                                          recipients fall back after their budget and push
                                          resumes once the credential is fixed (a wrong
                                          credential is not the recipient's fault, so not a
                                          permanent failure)
429 QUOTA_EXCEEDED                        retry ``rate_limited`` after ``Retry-After``
500 INTERNAL, 503 UNAVAILABLE, other 5xx  retry ``push_<status>``, honouring ``Retry-After``
other 4xx                                 failed ``push_http_<n>``
========================================  =====================================================

Guarantee: at least once to FCM per task while the alert is in force; a repeat (after a lost
answer or a crash) is a second FCM call that replaces the first notification on the device.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from streams.delivery.channels import JsonPoster, check_url
from streams.delivery.content import Message
from streams.delivery.policy import Outcome

__all__ = ["MAX_PAYLOAD", "PushChannel", "build_message", "fit_payload", "outcome_of_fcm"]

log = logging.getLogger("loa.deliver.push")

#: FCM's limit on a message's payload (notification + data), in bytes.
MAX_PAYLOAD = 4096

#: Renders a task's notification (None: the content is not known yet; the task retries).
MessageOf = Callable[[dict[str, Any]], Awaitable[Message | None]]


def _payload_size(notification: dict[str, str], data: dict[str, str]) -> int:
    return len(orjson.dumps(notification)) + len(orjson.dumps(data))


def _cut(text: str, keep: int) -> str:
    """The first ``keep`` characters of ``text`` ended at a word, plus ``…``."""
    head = text[:keep]
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip() + "…"


def fit_payload(
    title: str, body: str, data: dict[str, str], limit: int = MAX_PAYLOAD
) -> tuple[str, str]:
    """(title, body) cut so the notification and data JSON fit ``limit`` bytes (see above)."""

    def size(t: str, b: str) -> int:
        return _payload_size({"title": t, "body": b}, data)

    if size(title, body) <= limit:
        return title, body
    for field in ("body", "title"):
        text = body if field == "body" else title
        lo, hi = 0, len(text)  # the longest prefix that fits (bisection over characters)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cut = _cut(text, mid)
            fits = size(title, cut) if field == "body" else size(cut, "")
            lo, hi = (mid, hi) if fits <= limit else (lo, mid - 1)
        if field == "body":
            body = _cut(body, lo) if lo else ""
            if size(title, body) <= limit:
                return title, body
        else:
            return (_cut(title, lo) if lo else ""), ""
    return title, body


def build_message(task: dict[str, Any], token: str, message: Message, now: float) -> dict[str, Any]:
    """The FCM v1 request body of one task."""
    key = str(task["idempotency_key"])
    data = {
        "alert_id": str(task["alert_id"]),
        "version": str(task["version"]),
        "kind": str(task["kind"]),
        "priority": str(task["priority"]),
        "idempotency_key": key,
    }
    title, body = fit_payload(message.title, message.body, data)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]  # apns-collapse-id <= 64 B
    expires = task.get("expires")
    android: dict[str, Any] = {"priority": "high", "notification": {"tag": digest}}
    apns_headers = {"apns-priority": "10", "apns-collapse-id": digest}
    if expires is not None:
        android["ttl"] = f"{max(0, math.ceil(float(expires) - now))}s"
        apns_headers["apns-expiration"] = str(int(expires))
    return {
        "message": {
            "token": token,
            "notification": {"title": title, "body": body},
            "data": data,
            "android": android,
            "apns": {"headers": apns_headers, "payload": {"aps": {"sound": "default"}}},
        }
    }


def _error_code(body: bytes) -> tuple[str, str]:
    """(error.status, details[].errorCode) of an FCM error body ("" when absent)."""
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return "", ""
    code = next((str(d["errorCode"]) for d in error.get("details") or [] if "errorCode" in d), "")
    return str(error.get("status") or ""), code


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else seconds


def outcome_of_fcm(status: int, headers: Any, body: bytes) -> Outcome:
    """The outcome an FCM answer means (pure; the table in the module docstring)."""
    if 200 <= status < 300:
        return Outcome.delivered()
    error_status, code = _error_code(body)
    after = _retry_after(headers.get("retry-after"))
    if status == 429:
        return Outcome.retry("rate_limited", after)
    if status >= 500:
        return Outcome.retry(f"push_{(error_status or str(status)).lower()}", after)
    if status == 404 or code == "UNREGISTERED":
        return Outcome.failed("push_unregistered")
    if status == 403 and code == "SENDER_ID_MISMATCH":
        return Outcome.failed("push_sender_id_mismatch")
    if status in (401, 403):
        return Outcome.retry(f"push_credential_{status}")
    if status == 400:
        return Outcome.failed("push_invalid_argument")
    if status == 408:
        return Outcome.retry("push_408", after)
    return Outcome.failed(f"push_http_{status}")


class _TokenFile:
    """The bearer token: first line of a file, re-read when its mtime changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1.0
        self._checked = float("-inf")
        self._token = ""
        self.get()  # an unreadable file fails at start (ValueError), not at the first call

    def get(self) -> str:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return self._token
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime:
                self._token = Path(self.path).read_text(encoding="utf-8").splitlines()[0]
                self._mtime = mtime
        except (OSError, IndexError):
            if not self._token:
                raise ValueError(
                    f"LOA_DELIVERY_PUSH_TOKEN_FILE={self.path}: cannot read a token"
                ) from None
            log.warning("cannot re-read %s; keeping the token read before", self.path)
        return self._token


class PushChannel:
    """Send each task as a push notification through an FCM-v1-shaped API."""

    name = "push"

    def __init__(
        self,
        base_url: str,
        project: str,
        token_file: str,
        message_of: MessageOf,
        *,
        device_token_template: str = "{recipient_id}",
        timeout_s: float = 10.0,
        max_connections: int = 64,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        check_url(base_url)
        if not project or "/" in project:
            raise ValueError(f"{project!r}: a push project id is one path segment")
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        parts = urlsplit(base_url)
        self.endpoint = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.device_token_template = device_token_template
        self.message_of = message_of
        self._token = _TokenFile(token_file)
        self._credential_logged_at = float("-inf")
        self._http = JsonPoster(timeout_s=timeout_s, max_connections=max_connections, verify=verify)

    def device_token(self, task: dict[str, Any]) -> str:
        return self.device_token_template.format(recipient_id=task["recipient_id"])

    async def send(self, task: dict[str, Any]) -> Outcome:
        message = await self.message_of(task)
        if message is None:
            return Outcome.retry("no_content")
        body = build_message(task, self.device_token(task), message, time.time())
        response = await self._http.post(
            self.url,
            orjson.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self._token.get()}"},
        )
        if isinstance(response, str):
            return Outcome.retry(response)
        outcome = outcome_of_fcm(response.status, response.headers, response.body)
        if outcome.reason and outcome.reason.startswith("push_credential"):
            now = time.monotonic()
            if now - self._credential_logged_at >= 60:  # once a minute, not once per call
                self._credential_logged_at = now
                log.error(
                    "push provider refused the credential in %s (HTTP %d); calls retry",
                    self._token.path,
                    response.status,
                )
        return outcome

    async def close(self) -> None:
        await self._http.close()
