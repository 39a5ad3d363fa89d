"""The console's HTTP plumbing: security headers, JSON errors, sessions and CSRF on ``/api/``.

Where it sits: around every console handler (:mod:`streams.console.server`). Pure helpers plus
one aiohttp middleware; the handlers raise :class:`~streams.errors.ConsoleRefused` and this
module turns it into the contract's error body (``{"error", "message", "problems"?}``).

Every response carries the Content-Security-Policy of the contract (no inline script or style,
no eval, no framing), ``nosniff``, ``no-referrer``, and on HTTPS ``Strict-Transport-Security``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from streams.errors import ConsoleRefused

__all__ = [
    "COOKIE",
    "STATIC_DIR",
    "content_security_policy",
    "dumps",
    "error_response",
    "json_body",
    "json_response",
]

log = logging.getLogger("loa.console")

#: The built front end (deploy/console/build.sh writes it).
STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY = 256 * 1024
COOKIE = "loa_console"
CSRF_HEADER = "X-CSRF-Token"
#: Long-lived caching for built assets (their names carry a content hash, see deploy/console).
STATIC_CACHE = "public, max-age=31536000, immutable"


def content_security_policy(tile_url: str) -> str:
    """The contract's policy; a tile server's origin is allowed as an image source."""
    images = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def security_headers(tile_url: str, https: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": content_security_policy(tile_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_response(body: Any, status: int = 200) -> web.Response:
    response = web.json_response(body, status=status, dumps=dumps)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(exc: ConsoleRefused) -> web.Response:
    body: dict[str, Any] = {"error": exc.error, "message": exc.message}
    if exc.status == 422:
        body["problems"] = [{"field": f, "message": m} for f, m in exc.problems]
    response = json_response(body, exc.status)
    response.headers.update(exc.headers)
    return response


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else (415 for another content type)."""
    if request.content_type != "application/json":
        raise ConsoleRefused(415, "unsupported_media_type", "send application/json")
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise ConsoleRefused(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ConsoleRefused(400, "bad_request", "the body must be a JSON object")
    return body
