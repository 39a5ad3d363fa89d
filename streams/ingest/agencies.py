"""Agencies: who may publish, proven by whose signature, allowed to target what.

Where it sits: ingest, between parsing and the lifecycle. For each inbound record the agent
reads the signature headers, the parser gives the CAP ``sender``; then

* :func:`verify` (or :func:`verify_headers`) finds the sender in the :class:`AgencyRegistry`
  and checks the Ed25519 signature over the *exact record value bytes* against the sender's own
  key named by ``loa-key-id``: ``unknown_sender`` or ``bad_signature`` otherwise. A valid
  signature made with another agency's key is ``bad_signature``: keys are looked up only among
  the sender's keys, so no agency can speak for another.
* A CAP alert may instead carry an enveloped XML-DSig ``<Signature>`` made with one of the
  sender's pinned X.509 ``certificates``: :mod:`streams.ingest.xmldsig` checks it.
* :func:`authorize` checks the alert's status, severities and (resolved) region codes against
  the agency: ``status_not_allowed``, ``severity_not_allowed``, ``out_of_jurisdiction``, each
  with the pointer of the first offending field.
* :func:`authorize_change` checks that the agency may Update or Cancel a lineage: it is the
  lineage's owner, or its record grants it the right (``amends``) over the owner's alerts and
  the lineage's whole area lies in its jurisdiction: ``not_lineage_owner`` otherwise.

Guarantee: both functions are pure (no Kafka, no clock, no I/O) and raise only
:class:`~streams.errors.PoisonError` subclasses for any input, however hostile; they return only
when the record is authentic and within the agency's rights. Signing helpers for publishers
(``loa keys new``, ``loa publish --key``) and the agency file format live here too, so the
publisher and the verifier cannot disagree on what is signed.

The registry itself is data on the compacted topic ``<prefix>.agencies``, replayed by
:mod:`streams.ingest.agency_service`; files under ``deploy/agencies/`` seed it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.directory.cells import CellSet, parse_cell
from streams.errors import (
    BadSignature,
    InvalidAgency,
    NotLineageOwner,
    OutOfJurisdiction,
    SeverityNotAllowed,
    StatusNotAllowed,
    UnknownSender,
    quote,
)
from streams.regions import COUNTRY
from streams.schemas import validator

__all__ = [
    "KEY_ID_HEADER",
    "SEVERITY_RANK",
    "SIGNATURE_HEADER",
    "Agency",
    "AgencyRegistry",
    "Grant",
    "KeyPair",
    "Pointed",
    "add_keys",
    "authorize",
    "authorize_change",
    "certificate_der",
    "decode_agency_record",
    "der_to_pem",
    "identify",
    "key_file_stem",
    "load_agency_files",
    "load_private_key",
    "new_key_pair",
    "parse_agency",
    "read_credentials",
    "read_public_key_file",
    "sign",
    "signature_headers",
    "verify",
    "verify_headers",
    "with_key",
    "write_key_pair",
]

#: Kafka header with base64 (standard alphabet, padded) of the 64-byte Ed25519 signature over
#: the record value exactly as sent.
SIGNATURE_HEADER = "loa-signature"
#: Kafka header naming which of the sender's keys made the signature.
KEY_ID_HEADER = "loa-key-id"

#: CAP severities, higher is more severe; an agency may use its ``max_severity`` and below.
SEVERITY_RANK: Mapping[str, int] = MappingProxyType(
    {"Unknown": 0, "Minor": 1, "Moderate": 2, "Severe": 3, "Extreme": 4}
)

#: ``(pointer, value)``: a value and the JSON pointer (or XPath) of the field it came from.
Pointed = tuple[str, str]

_SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 32
_MIN_RSA_BITS = 2048
# Header values longer than this are not a signature (base64 of 64 bytes is 88 characters);
# refusing early keeps a hostile header from costing a large decode.
_MAX_HEADER_BYTES = 256
_KEY_FILE_FIELD = re.compile(rb"^loa-(agency|key-id): *(\S+) *$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Grant:
    """A right over other agencies' lineages (``amends`` in the agency record).

    The holder may send the ``msg_types`` (Update, Cancel) of lineages started by the agencies
    in ``of`` (``*``: any agency) whose whole area lies in the holder's jurisdiction.
    """

    of: tuple[str, ...]
    msg_types: tuple[str, ...]

    def covers(self, owner: str, msg_type: str) -> bool:
        return msg_type in self.msg_types and ("*" in self.of or owner in self.of)

    def to_doc(self) -> dict[str, list[str]]:
        return {"of": list(self.of), "msg_types": list(self.msg_types)}

    def describe(self) -> str:
        who = "any agency" if "*" in self.of else ", ".join(self.of)
        return f"{'/'.join(self.msg_types)} of {who} within its jurisdiction"


@dataclass(frozen=True, slots=True)
class Agency:
    """One alerting authority (``schemas/agency.schema.json``)."""

    #: The CAP ``sender`` of its alerts; also the record key on the agencies topic.
    id: str
    name: str
    #: Ed25519 public keys (32 raw bytes) by key id.
    keys: Mapping[str, bytes]
    #: Region-code prefixes it may target (``VN`` national, ``VN-22`` a province...).
    jurisdiction: tuple[str, ...]
    allowed_statuses: tuple[str, ...]
    #: Highest CAP severity it may use (see :data:`SEVERITY_RANK`).
    max_severity: str
    contact: str = ""
    #: H3 cells where it may target polygons and circles (see :meth:`covers_cell`).
    jurisdiction_cells: tuple[str, ...] = ()
    #: Pinned X.509 certificates (DER) by certificate id, for XML-DSig signed CAP
    #: (:mod:`streams.ingest.xmldsig`).
    certificates: Mapping[str, bytes] = field(default_factory=dict)
    #: Rights over lineages other agencies started (see :func:`authorize_change`).
    amends: tuple[Grant, ...] = ()
    _rank: int = field(default=0, init=False, repr=False, compare=False)
    #: ``jurisdiction_cells`` as a :class:`~streams.directory.cells.CellSet` (invalid ones
    #: dropped: they cover nothing)
    _areas: CellSet = field(default=CellSet(()), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "jurisdiction", tuple(self.jurisdiction))
        object.__setattr__(self, "allowed_statuses", tuple(self.allowed_statuses))
        object.__setattr__(self, "jurisdiction_cells", tuple(self.jurisdiction_cells))
        object.__setattr__(self, "certificates", MappingProxyType(dict(self.certificates)))
        object.__setattr__(self, "amends", tuple(self.amends))
        object.__setattr__(self, "_rank", SEVERITY_RANK[self.max_severity])
        areas = (parse_cell(c) for c in self.jurisdiction_cells)
        object.__setattr__(self, "_areas", CellSet.of(a for a in areas if a is not None))

    def covers(self, code: str) -> bool:
        """True if ``code`` is one of the jurisdiction prefixes or below one of them.

        Prefixes match whole segments: ``VN-2`` does not cover ``VN-22``.
        """
        return any(code == p or code.startswith(p + "-") for p in self.jurisdiction)

    @property
    def national(self) -> bool:
        """Its jurisdiction is the whole country of the region registry (``VN``)."""
        return COUNTRY in self.jurisdiction

    def covers_cell(self, cell: str) -> bool:
        """True if the H3 ``cell`` lies inside the agency's area.

        Region codes carry no geometry here, so shapes (polygons, circles, resolved to H3
        cells) are checked against ``jurisdiction_cells``; a national agency covers every cell:
        ``streams.regions`` already refuses a shape lying wholly outside the country's land and
        territorial sea, and accepts one partly outside whole (its cells across the border stay
        targeted and are reported in ``Targets.outside``). A target cell coarser than a
        jurisdiction cell is not inside it.
        """
        if self.national:
            return True
        target = parse_cell(cell)
        if target is None:
            return False
        return bool(self._areas.covers(np.array([target], dtype=np.uint64))[0])

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in self.keys.items()},
            "jurisdiction": list(self.jurisdiction),
            "allowed_statuses": list(self.allowed_statuses),
            "max_severity": self.max_severity,
        }
        if self.contact:
            doc["contact"] = self.contact
        if self.jurisdiction_cells:
            doc["jurisdiction_cells"] = list(self.jurisdiction_cells)
        if self.certificates:
            doc["certificates"] = {cid: der_to_pem(der) for cid, der in self.certificates.items()}
        if self.amends:
            doc["amends"] = [grant.to_doc() for grant in self.amends]
        return doc

    def to_json(self) -> bytes:
        """The record value on the agencies topic (and the content of an agency file)."""
        return orjson.dumps(self.to_doc(), option=orjson.OPT_INDENT_2)


@dataclass(frozen=True, slots=True)
class AgencyRegistry:
    """An immutable snapshot of the registry: agencies by id, and ids whose record is invalid."""

    agencies: Mapping[str, Agency] = field(default_factory=dict)
    #: Agency id -> why its latest record was refused (it is absent from ``agencies``).
    invalid: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, *agencies: Agency) -> AgencyRegistry:
        return cls(MappingProxyType({a.id: a for a in agencies}))

    def get(self, agency_id: str) -> Agency | None:
        return self.agencies.get(agency_id)

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self.agencies

    def __len__(self) -> int:
        return len(self.agencies)


# --- the agency file / record format ---------------------------------------------------------


def parse_agency(doc: object, *, key: str | None = None) -> Agency:
    """An :class:`Agency` from its JSON document; :class:`InvalidAgency` if it is not valid.

    ``key`` is the record key it came with; it must equal the document's ``id``.
    """
    hint = key if key is not None else _id_hint(doc)
    errors = sorted(validator("agency").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise InvalidAgency(f"agency record at {where}: {first.message}", agency=hint)
    assert isinstance(doc, dict)
    if key is not None and doc["id"] != key:
        raise InvalidAgency(
            f"record key {quote(key)} differs from its id {quote(doc['id'])}", agency=key
        )
    keys: dict[str, bytes] = {}
    for kid, text in doc["keys"].items():
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            # the schema's pattern admits only base64; this holds when an older contract set
            # (LOA_SCHEMAS_DIR) lets a stray character through: a refusal, never a traceback
            raise InvalidAgency(f"key {quote(kid)} is not base64", agency=hint) from None
        if len(raw) != _PUBLIC_KEY_BYTES:
            raise InvalidAgency(f"key {quote(kid)} is not an Ed25519 public key", agency=hint)
        try:
            _public_key(raw)
        except ValueError as exc:
            raise InvalidAgency(f"key {quote(kid)}: {exc}", agency=hint) from None
        keys[kid] = raw
    certificates = {
        cid: certificate_der(pem, cid, hint) for cid, pem in doc.get("certificates", {}).items()
    }
    return Agency(
        id=doc["id"],
        name=doc["name"],
        keys=keys,
        jurisdiction=tuple(doc["jurisdiction"]),
        allowed_statuses=tuple(doc["allowed_statuses"]),
        max_severity=doc["max_severity"],
        contact=doc.get("contact", ""),
        jurisdiction_cells=tuple(doc.get("jurisdiction_cells", ())),
        certificates=certificates,
        amends=tuple(Grant(tuple(g["of"]), tuple(g["msg_types"])) for g in doc.get("amends", ())),
    )


def certificate_der(pem: str, cert_id: str, agency: str | None = None) -> bytes:
    """DER of one PEM certificate of an agency record; :class:`InvalidAgency` if unusable.

    Refused: not exactly one X.509 certificate, a key that is neither RSA (2048 bits or more)
    nor elliptic-curve (signxml verifies RSA and ECDSA signatures).
    """
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidAgency(
            f"certificate {quote(cert_id)} is not PEM X.509: {exc}", agency=agency
        ) from None
    if len(certs) != 1:
        raise InvalidAgency(
            f"certificate {quote(cert_id)} holds {len(certs)} certificates, not 1", agency=agency
        )
    key = certs[0].public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise InvalidAgency(
            f"certificate {quote(cert_id)} has a {key.key_size}-bit RSA key"
            f" (at least {_MIN_RSA_BITS})",
            agency=agency,
        )
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InvalidAgency(
            f"certificate {quote(cert_id)}: only RSA and EC keys sign XML", agency=agency
        )
    return certs[0].public_bytes(serialization.Encoding.DER)


def der_to_pem(der: bytes) -> str:
    """PEM text of a DER certificate (what an agency record holds)."""
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


def decode_agency_record(key: bytes | None, value: bytes) -> Agency:
    """The agency in one (non-tombstone) record of the agencies topic; :class:`InvalidAgency`."""
    try:
        agency_id = key.decode("utf-8") if key is not None else None
    except UnicodeDecodeError:
        raise InvalidAgency("record key is not UTF-8") from None
    if agency_id is None:
        raise InvalidAgency("record without a key (the key must be the agency id)")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidAgency(f"not JSON: {exc}", agency=agency_id) from None
    return parse_agency(doc, key=agency_id)


def load_agency_files(path: Path) -> list[Agency]:
    """Agencies from one JSON file or every ``*.json`` of a directory (sorted by file name).

    Raises :class:`InvalidAgency` naming the file on the first invalid one or duplicate id.
    """
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    seen: dict[str, Path] = {}
    agencies: list[Agency] = []
    for file in files:
        try:
            agency = parse_agency(orjson.loads(file.read_bytes()))
        except orjson.JSONDecodeError as exc:
            raise InvalidAgency(f"{file}: not JSON: {exc}") from None
        except InvalidAgency as exc:
            raise InvalidAgency(f"{file}: {exc.message}", agency=exc.agency) from None
        if agency.id in seen:
            raise InvalidAgency(f"{file}: agency {quote(agency.id)} is also in {seen[agency.id]}")
        seen[agency.id] = file
        agencies.append(agency)
    return agencies


def with_key(agency: Agency, key_id: str, public_key: bytes) -> Agency:
    """``agency`` with one more (or a replaced) public key, validated like a loaded record."""
    doc = agency.to_doc()
    doc["keys"][key_id] = base64.b64encode(public_key).decode("ascii")
    return parse_agency(doc)


def _id_hint(doc: object) -> str | None:
    if isinstance(doc, dict) and isinstance(doc.get("id"), str):
        return str(doc["id"])
    return None


# --- authentication -------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def identify(registry: AgencyRegistry, sender: str | None, *, pointer: str = "/sender") -> Agency:
    """The registered agency named ``sender``, or :class:`UnknownSender` at ``pointer``."""
    agency = registry.get(sender) if isinstance(sender, str) else None
    if agency is None:
        why = registry.invalid.get(sender) if isinstance(sender, str) else None
        detail = f" (its registry record is invalid: {why})" if why else ""
        raise UnknownSender(
            f"sender {quote(sender)} is not a registered agency{detail}", pointer=pointer
        )
    return agency


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
        _public_key(public).verify(sig, raw or b"")
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


# --- authorization --------------------------------------------------------------------------


def authorize(
    agency: Agency,
    *,
    status: Pointed,
    severities: Iterable[Pointed],
    region_codes: Iterable[Pointed],
    cells: Iterable[Pointed] = (),
) -> None:
    """Return if ``agency`` may publish this; else raise at the first offending field.

    Checks the status, then each severity, then each region code (Loa codes, geocodes already
    resolved to codes), then each H3 cell of the polygons and circles (:meth:`Agency.covers_cell`).
    Each argument is ``(pointer, value)``. Raises :class:`StatusNotAllowed`,
    :class:`SeverityNotAllowed` or :class:`OutOfJurisdiction`.
    """
    pointer, value = status
    if value not in agency.allowed_statuses:
        allowed = ", ".join(agency.allowed_statuses) or "none"
        raise StatusNotAllowed(
            f"agency {quote(agency.id)} may not publish status {quote(value)} (allowed: {allowed})",
            pointer=pointer,
        )
    for pointer, value in severities:
        if SEVERITY_RANK.get(value, len(SEVERITY_RANK)) > agency._rank:
            raise SeverityNotAllowed(
                f"agency {quote(agency.id)} may not publish severity {quote(value)} "
                f"(its highest is {agency.max_severity})",
                pointer=pointer,
            )
    for pointer, value in region_codes:
        if not agency.covers(value):
            area = ", ".join(agency.jurisdiction) or "none"
            raise OutOfJurisdiction(
                f"{quote(value)} is outside the jurisdiction of agency {quote(agency.id)} ({area})",
                pointer=pointer,
            )
    for pointer, value in cells:
        if not agency.covers_cell(value):
            raise OutOfJurisdiction(
                f"the shape reaches H3 cell {value} outside the jurisdiction of agency "
                f"{quote(agency.id)}"
                + ("" if agency.jurisdiction_cells else " (it has no jurisdiction_cells)"),
                pointer=pointer,
            )


def authorize_change(
    agency: Agency,
    *,
    lineage: str,
    owner: str,
    codes: Iterable[str],
    cells: Iterable[str],
    msg_type: str,
    pointer: str = "/references",
) -> None:
    """Return if ``agency`` may send a ``msg_type`` (Update, Cancel) of ``lineage``; else raise
    :class:`NotLineageOwner` naming who owns it.

    A lineage belongs to its owner (the sender of its Alert). Another agency may change it only
    through a :class:`Grant` of its own record covering the owner and the message type, and
    only if every region code and cell the lineage has reached (``codes``, ``cells``: every
    version's area) lies in its jurisdiction, so a province never touches a national lineage.
    """
    if agency.id == owner:
        return
    grants = [g for g in agency.amends if g.covers(owner, msg_type)]
    base = (
        f"lineage {quote(lineage)} belongs to agency {quote(owner)}; agency {quote(agency.id)}"
        f" may not {msg_type} it"
    )
    if not grants:
        rights = "; ".join(g.describe() for g in agency.amends) or "none"
        raise NotLineageOwner(
            f"{base} (the registry grants it no right over {quote(owner)}'s alerts; its amends:"
            f" {rights})",
            pointer=pointer,
        )
    outside = [c for c in sorted(codes) if not agency.covers(c)]
    outside += [c for c in sorted(cells) if not agency.covers_cell(c)]
    if outside:
        area = ", ".join(agency.jurisdiction) or "none"
        raise NotLineageOwner(
            f"{base}: the lineage reaches {quote(outside[0])}"
            + (f" and {len(outside) - 1} more" if len(outside) > 1 else "")
            + f", outside its jurisdiction ({area})",
            pointer=pointer,
        )


# --- publishing -----------------------------------------------------------------------------


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


# --- key files ------------------------------------------------------------------------------

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


def add_keys(agencies: Iterable[Agency], keys: Iterable[tuple[str, str, bytes]]) -> list[Agency]:
    """``agencies`` with extra ``(agency, key_id, public_key)`` keys merged in.

    A key for an agency that is not among ``agencies`` is :class:`InvalidAgency`.
    """
    by_id = {a.id: a for a in agencies}
    for agency_id, key_id, public in keys:
        if agency_id not in by_id:
            raise InvalidAgency(
                f"key {quote(key_id)} is for agency {quote(agency_id)}, which is not loaded"
            )
        by_id[agency_id] = with_key(by_id[agency_id], key_id, public)
    return list(by_id.values())
