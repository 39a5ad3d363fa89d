"""The agency registry: who may publish, allowed to target what, and who may change whose alerts.

Where it sits: ingest. An :class:`Agency` (``schemas/agency.schema.json``) names its keys, its
jurisdiction (region-code prefixes and H3 cells), the statuses and severities it may use, its
pinned X.509 certificates and the rights it has over other agencies' lineages (:class:`Grant`);
an :class:`AgencyRegistry` holds them by id. The registry is data on the compacted topic
``<prefix>.agencies``, replayed by :mod:`streams.ingest.agency_service`; files under
``deploy/agencies/`` seed it (:func:`load_agency_files`).

Beside it: :mod:`streams.ingest.signatures` (is the record signed by the sender's own key?) and
:mod:`streams.ingest.authority` (may this agency publish this, change that lineage?).

Guarantee: parsing is pure and strict; a record that does not parse is
:class:`~streams.errors.InvalidAgency` naming the field, never a partially trusted agency.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams.directory.cells import CellSet, parse_cell
from streams.errors import (
    InvalidAgency,
    UnknownSender,
    quote,
)
from streams.regions import COUNTRY
from streams.schemas import validator

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SEVERITY_RANK",
    "Agency",
    "AgencyRegistry",
    "Grant",
    "add_keys",
    "certificate_der",
    "decode_agency_record",
    "der_to_pem",
    "identify",
    "load_agency_files",
    "parse_agency",
    "public_key",
    "with_key",
]

#: CAP severities, higher is more severe; an agency may use its ``max_severity`` and below.
SEVERITY_RANK: Mapping[str, int] = MappingProxyType(
    {"Unknown": 0, "Minor": 1, "Moderate": 2, "Severe": 3, "Extreme": 4}
)


#: Length of an Ed25519 public key.
PUBLIC_KEY_BYTES = 32


_MIN_RSA_BITS = 2048


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

    def allows_severity(self, severity: str) -> bool:
        """May it publish ``severity`` (its ``max_severity`` and below; unknown: no)?"""
        return SEVERITY_RANK.get(severity, len(SEVERITY_RANK)) <= self._rank

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


@lru_cache(maxsize=4096)
def public_key(raw: bytes) -> Ed25519PublicKey:
    """The Ed25519 key of 32 raw bytes (cached: the same few keys verify every record)."""
    return Ed25519PublicKey.from_public_bytes(raw)


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
        if len(raw) != PUBLIC_KEY_BYTES:
            raise InvalidAgency(f"key {quote(kid)} is not an Ed25519 public key", agency=hint)
        try:
            public_key(raw)
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
