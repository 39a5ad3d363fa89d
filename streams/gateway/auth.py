"""Who is asking: signed GET requests, so an agency reads only the decisions of alerts it sent.

Where it sits: in front of ``GET /v1/alerts/{alert_id}`` (:mod:`streams.gateway.server`). A POST
is authenticated by ingest (the body's signature); a GET has no body, so the request itself is
signed, with the same agency keys (``loa keys new``, the agency registry):

* ``Loa-Agency``: the agency id (a CAP ``sender``);
* ``Loa-Key-Id``: which of its registered Ed25519 keys signed;
* ``Loa-Date``: the time of the request (RFC 3339), within :data:`MAX_SKEW_S` of the gateway's
  clock, so a captured request cannot be replayed later;
* ``Loa-Signature``: base64 of the Ed25519 signature over :func:`canonical`:
  ``"GET\\n" + path and query exactly as sent + "\\n" + Loa-Date``.

:func:`verify_request` is pure (the registry and the clock are passed in) and raises
:class:`Unauthorized` with a reason for any input, however hostile; :func:`sign_request` is what
a client does (``loa`` uses it; any Ed25519 library can).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams.errors import quote
from streams.ingest.agencies import AgencyRegistry
from streams.ingest.signatures import KeyPair, sign

__all__ = [
    "AGENCY_HEADER",
    "DATE_HEADER",
    "KEY_ID_HEADER",
    "MAX_SKEW_S",
    "SIGNATURE_HEADER",
    "Unauthorized",
    "canonical",
    "sign_request",
    "verify_request",
]

AGENCY_HEADER = "Loa-Agency"
KEY_ID_HEADER = "Loa-Key-Id"
DATE_HEADER = "Loa-Date"
SIGNATURE_HEADER = "Loa-Signature"
#: How far ``Loa-Date`` may be from the gateway's clock, either way.
MAX_SKEW_S = 300.0
_MAX_HEADER = 512


class Unauthorized(Exception):
    """The request is not signed by a registered agency (answered 401 with the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical(method: str, path_qs: str, date: str) -> bytes:
    """The bytes a request signature covers."""
    return f"{method.upper()}\n{path_qs}\n{date}".encode()


def sign_request(key: KeyPair, method: str, path_qs: str, now: datetime) -> dict[str, str]:
    """The headers that authenticate one request as ``key``'s agency."""
    date = now.astimezone(UTC).isoformat(timespec="seconds")
    return {
        AGENCY_HEADER: key.agency,
        KEY_ID_HEADER: key.key_id,
        DATE_HEADER: date,
        SIGNATURE_HEADER: sign(key.private_key, canonical(method, path_qs, date)).decode("ascii"),
    }


def verify_request(
    registry: AgencyRegistry,
    headers: Mapping[str, str],
    method: str,
    path_qs: str,
    now: datetime,
) -> str:
    """The id of the agency that signed this request; :class:`Unauthorized` otherwise."""
    values = {}
    for name in (AGENCY_HEADER, KEY_ID_HEADER, DATE_HEADER, SIGNATURE_HEADER):
        value = headers.get(name)
        if not value:
            raise Unauthorized(f"no {name} header: sign the request with your agency's key")
        if len(value) > _MAX_HEADER:
            raise Unauthorized(f"header {name} is too long")
        values[name] = value
    agency = registry.get(values[AGENCY_HEADER])
    if agency is None:
        raise Unauthorized(f"agency {quote(values[AGENCY_HEADER])} is not registered")
    public = agency.keys.get(values[KEY_ID_HEADER])
    if public is None:
        raise Unauthorized(
            f"key id {quote(values[KEY_ID_HEADER])} is not a key of agency {quote(agency.id)}"
        )
    try:
        when = datetime.fromisoformat(values[DATE_HEADER])
    except ValueError:
        raise Unauthorized(f"{DATE_HEADER} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise Unauthorized(f"{DATE_HEADER} has no UTC offset")
    skew = abs((now - when).total_seconds())
    if skew > MAX_SKEW_S:
        raise Unauthorized(
            f"{DATE_HEADER} is {skew:.0f} s from the gateway's clock (at most {MAX_SKEW_S:.0f})"
        )
    try:
        signature = base64.b64decode(values[SIGNATURE_HEADER], validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, canonical(method, path_qs, values[DATE_HEADER])
        )
    except (binascii.Error, ValueError, InvalidSignature):
        raise Unauthorized(
            f"the signature does not verify with key {quote(values[KEY_ID_HEADER])} of agency"
            f" {quote(agency.id)}"
        ) from None
    return agency.id
