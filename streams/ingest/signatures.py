"""Signatures: is an inbound record signed by its sender's own key? And the publisher's side.

Where it sits: ingest, between parsing and authorization. For each inbound record the agent
reads the signature headers, the parser gives the CAP ``sender``; then :func:`verify` (or
:func:`verify_headers`) finds the sender in the :class:`~streams.ingest.agencies.AgencyRegistry`
and checks the Ed25519 signature over the *exact record value bytes* against the sender's own
key named by ``loa-key-id``: ``unknown_sender`` or ``bad_signature`` otherwise. A valid
signature made with another agency's key is ``bad_signature``: keys are looked up only among the
sender's keys, so no agency can speak for another. (A CAP alert may instead carry an enveloped
XML-DSig ``<Signature>`` made with one of the sender's pinned certificates:
:mod:`streams.ingest.xmldsig`.)

The signing helpers for publishers (``loa keys new``, ``loa publish --key``, the gateway) live
here too, so the publisher and the verifier cannot disagree on what is signed.

Guarantee: pure (no Kafka, no clock); any input, however hostile, ends in a
:class:`~streams.errors.PoisonError` subclass or an authentic sender.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams.errors import (
    BadSignature,
    InvalidAgency,
    quote,
)
from streams.ingest.agencies import Agency, AgencyRegistry, identify, public_key

__all__ = [
    "KEY_ID_HEADER",
    "SIGNATURE_HEADER",
    "KeyPair",
    "key_file_stem",
    "load_private_key",
    "new_key_pair",
    "read_credentials",
    "read_public_key_file",
    "sign",
    "signature_headers",
    "verify",
    "verify_headers",
    "write_key_pair",
]

#: Kafka header with base64 (standard alphabet, padded) of the 64-byte Ed25519 signature over
#: the record value exactly as sent.
SIGNATURE_HEADER = "loa-signature"


#: Kafka header naming which of the sender's keys made the signature.
KEY_ID_HEADER = "loa-key-id"


_SIGNATURE_BYTES = 64


# Header values longer than this are not a signature (base64 of 64 bytes is 88 characters);
# refusing early keeps a hostile header from costing a large decode.
_MAX_HEADER_BYTES = 256


_KEY_FILE_FIELD = re.compile(rb"^loa-(agency|key-id): *(\S+) *$", re.MULTILINE)


def verify(
    registry: AgencyRegistry,
    sender: str | None,
    raw: bytes | None,
    signature: str | bytes | None,
    key_id: str | bytes | None,
    *,
    sender_pointer: str = "/sender",
) -> Agency:
    """The sender's :class:`Agency` if ``signature`` is its key ``key_id``'s signature of ``raw``.

    ``signature`` is the ``loa-signature`` header (base64), ``key_id`` the ``loa-key-id`` header,
    both as they came (bytes or str, ``None`` when absent). Raises :class:`UnknownSender` or
    :class:`BadSignature` (missing header, unknown key id, malformed signature, a signature
    that does not verify — including a valid one by another agency's key).
    """
    agency = identify(registry, sender, pointer=sender_pointer)
    if signature is None or key_id is None:
        missing = SIGNATURE_HEADER if signature is None else KEY_ID_HEADER
        raise BadSignature(f"no {missing} header: alerts must be signed by their agency")
    kid = _header_text(key_id, KEY_ID_HEADER)
    public = agency.keys.get(kid)
    if public is None:
        raise BadSignature(f"key id {quote(kid)} is not a key of agency {quote(agency.id)}")
    sig = _decode_signature(signature)
    try:
        public_key(public).verify(sig, raw or b"")
    except InvalidSignature:
        raise BadSignature(
            f"signature does not verify with key {quote(kid)} of agency {quote(agency.id)}"
        ) from None
    return agency


def read_credentials(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
) -> tuple[bytes | None, bytes | None]:
    """``(signature, key_id)`` header values from a record's headers (absent: ``None``).

    Accepts aiokafka's and Faust's shapes (a sequence of pairs, or a mapping). A header given
    twice is :class:`BadSignature`: which one was signed would be ambiguous.
    """
    pairs: Iterable[Any]
    if headers is None:
        pairs = ()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    found: dict[str, bytes] = {}
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise BadSignature("unreadable record headers") from None
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        if not isinstance(name, str):
            continue
        name = name.lower()
        if name not in (SIGNATURE_HEADER, KEY_ID_HEADER):
            continue
        if name in found:
            raise BadSignature(f"header {name} appears more than once")
        if isinstance(value, str):
            value = value.encode("utf-8", errors="replace")
        found[name] = value if isinstance(value, bytes) else b""
    return found.get(SIGNATURE_HEADER), found.get(KEY_ID_HEADER)


def verify_headers(
    registry: AgencyRegistry,
    sender: str | None,
    raw: bytes | None,
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
    *,
    sender_pointer: str = "/sender",
) -> Agency:
    """:func:`read_credentials` then :func:`verify`: what the ingest agent calls."""
    agency = identify(registry, sender, pointer=sender_pointer)
    signature, key_id = read_credentials(headers)
    return verify(registry, agency.id, raw, signature, key_id, sender_pointer=sender_pointer)


def _header_text(value: str | bytes, name: str) -> str:
    if isinstance(value, bytes):
        if len(value) > _MAX_HEADER_BYTES:
            raise BadSignature(f"{name} header is too long")
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise BadSignature(f"{name} header is not ASCII") from None
    if len(value) > _MAX_HEADER_BYTES:
        raise BadSignature(f"{name} header is too long")
    return value


def _decode_signature(signature: str | bytes) -> bytes:
    text = _header_text(signature, SIGNATURE_HEADER)
    try:
        sig = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"{SIGNATURE_HEADER} header is not base64") from None
    if len(sig) != _SIGNATURE_BYTES:
        raise BadSignature(f"{SIGNATURE_HEADER} is {len(sig)} bytes, an Ed25519 signature is 64")
    return sig


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A publisher's signing key, as ``loa keys new`` writes it and ``loa publish`` reads it."""

    agency: str
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        """The 32 raw public key bytes (what goes in the agency's ``keys``)."""
        return self.private_key.public_key().public_bytes_raw()

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (keep the file mode 0600), preceded by the agency and key id.

        RFC 7468 allows explanatory text before the PEM block; the loader skips it.
        """
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return f"loa-agency: {self.agency}\nloa-key-id: {self.key_id}\n\n".encode() + pem

    def public_doc(self) -> dict[str, Any]:
        """What ``loa agencies load --key`` reads (the ``.pub.json`` file next to the key)."""
        return {"agency": self.agency, "key_id": self.key_id, "public_key": self.public_key_b64}


def new_key_pair(agency: str, key_id: str) -> KeyPair:
    return KeyPair(agency, key_id, Ed25519PrivateKey.generate())


def load_private_key(pem: bytes, *, key_id: str | None = None) -> KeyPair:
    """Read a key file written by :meth:`KeyPair.to_pem`; ``key_id`` overrides the file's."""
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    fields_ = {m.group(1).decode(): m.group(2).decode() for m in _KEY_FILE_FIELD.finditer(pem)}
    kid = key_id or fields_.get("key-id")
    if not kid:
        raise ValueError("the key file names no key id (loa-key-id:); pass one")
    return KeyPair(fields_.get("agency", ""), kid, private)


def sign(private_key: Ed25519PrivateKey, raw: bytes) -> bytes:
    """The ``loa-signature`` header value for ``raw``: base64 of its Ed25519 signature."""
    return base64.b64encode(private_key.sign(raw))


def signature_headers(key: KeyPair, raw: bytes) -> Sequence[tuple[str, bytes]]:
    """Kafka headers that make ``raw`` verifiable as published by ``key.agency``."""
    return [(SIGNATURE_HEADER, sign(key.private_key, raw)), (KEY_ID_HEADER, key.key_id.encode())]


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def key_file_stem(key_id: str) -> str:
    """A file name for ``key_id`` (key ids may hold ``/`` and ``:``)."""
    return _UNSAFE_FILE_CHARS.sub("_", key_id)


def write_key_pair(key: KeyPair, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (private, PEM, mode 0600) and ``<stem>.pub.json`` into ``out_dir``.

    Refuses to overwrite an existing private key (:class:`FileExistsError`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = key_file_stem(key.key_id)
    private_path, public_path = out_dir / f"{stem}.key", out_dir / f"{stem}.pub.json"
    # O_EXCL: never clobber a key, and the file is 0600 from its first byte.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
    public_path.write_bytes(orjson.dumps(key.public_doc(), option=orjson.OPT_INDENT_2) + b"\n")
    return private_path, public_path


def read_public_key_file(path: Path) -> tuple[str, str, bytes]:
    """``(agency, key_id, public_key)`` from a ``.pub.json`` file; :class:`InvalidAgency`."""
    try:
        doc = orjson.loads(path.read_bytes())
        agency, key_id, text = doc["agency"], doc["key_id"], doc["public_key"]
        if not all(isinstance(v, str) for v in (agency, key_id, text)):
            raise TypeError("agency, key_id and public_key must be strings")
        public = base64.b64decode(text, validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise InvalidAgency(f"{path}: not a public key file ({exc})") from None
    return agency, key_id, public
