"""XML-DSig: a CAP alert signed the CAP 1.2 way, by one of its agency's pinned certificates.

Where it sits: ingest, the authentication step of :func:`streams.ingest.core.decide`, through
:func:`authenticate`. A record with Loa's ``loa-signature``/``loa-key-id`` headers is checked as
before (:func:`streams.ingest.signatures.verify`); a CAP alert without them that carries an
enveloped ``<ds:Signature>`` is checked here with signxml (on lxml) against the X.509
``certificates`` registered for its sender (``schemas/agency.schema.json``).

Rules, each failure a :class:`~streams.errors.BadSignature` whose message says which:

* **Pinned keys only.** Only the sender's registered certificates are tried; a certificate in
  the signature's ``KeyInfo`` is never trusted (another agency's certificate, or a self-made one,
  does not verify). Each certificate is used only between its ``notBefore`` and ``notAfter``.
* **Whole alert, one signature (anti-wrapping).** Exactly one ``<ds:Signature>`` in the document,
  a child of the root ``<alert>``, with exactly one ``Reference`` whose ``URI`` is ``""``: the
  digest covers the whole alert (minus the signature). ``Id``-based references (``URI="#x"``),
  which let a signed element be moved under a forged alert, are refused.
* **Parse what was verified.** The alert ingest goes on with is parsed from the canonical bytes
  whose digest was checked (``VerifyResult.signed_data``), never from the received tree, and its
  ``sender`` must be the agency whose certificate verified it.
* **Strong algorithms.** Digests SHA-256/384/512 (and SHA3), signatures RSA or ECDSA over
  them; SHA-1, MD5, SHA-224 and HMAC are refused.

Guarantee: pure (no I/O; the clock is passed in) and, for any input, either returns or raises a
:class:`~streams.errors.PoisonError`. The document has already passed the hardened
:func:`~streams.ingest.cap.parse_cap` (no DTD, no entity, bounded size and depth) before lxml
sees it, and lxml is told not to resolve entities or touch the network anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from streams.errors import BadSignature, quote
from streams.ingest.agencies import Agency, AgencyRegistry, identify
from streams.ingest.cap import parse_cap
from streams.ingest.json_alert import validate_json_alert
from streams.ingest.signatures import read_credentials, verify

__all__ = ["DSIG_NAMESPACE", "authenticate", "has_xml_signature", "verify_enveloped"]

DSIG_NAMESPACE: Final = "http://www.w3.org/2000/09/xmldsig#"
_SIGNATURE: Final = f"{{{DSIG_NAMESPACE}}}Signature"
_REFERENCE: Final = f"{{{DSIG_NAMESPACE}}}SignedInfo/{{{DSIG_NAMESPACE}}}Reference"

_DIGESTS: Final = frozenset(
    {
        DigestAlgorithm.SHA256,
        DigestAlgorithm.SHA384,
        DigestAlgorithm.SHA512,
        DigestAlgorithm.SHA3_256,
        DigestAlgorithm.SHA3_384,
        DigestAlgorithm.SHA3_512,
    }
)
_METHODS: Final = frozenset(
    {
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
        SignatureMethod.SHA256_RSA_MGF1,
        SignatureMethod.SHA384_RSA_MGF1,
        SignatureMethod.SHA512_RSA_MGF1,
    }
)


def authenticate(
    registry: AgencyRegistry,
    doc: dict[str, Any],
    raw: bytes,
    headers: Iterable[tuple[str, bytes]] | None,
    *,
    xml: bool,
    now: datetime,
    max_bytes: int,
) -> tuple[Agency, dict[str, Any]]:
    """The sender's :class:`Agency` and the alert to go on with.

    With Loa's signature headers (either one present) the headers decide and ``doc`` is
    returned unchanged. Without them, a CAP alert that carries a ``<ds:Signature>`` is verified
    with :func:`verify_enveloped` and the alert returned is the one parsed from the verified
    bytes. Anything else is :class:`UnknownSender` or :class:`BadSignature`.
    """
    agency = identify(registry, doc.get("sender"))
    signature, key_id = read_credentials(headers)
    if signature is None and key_id is None and xml and has_xml_signature(raw):
        signed = parse_cap(verify_enveloped(agency, raw, now=now), max_bytes=max_bytes)
        validate_json_alert(signed)
        if signed.get("sender") != agency.id:
            raise BadSignature(
                f"the signed alert names sender {quote(signed.get('sender'))},"
                f" not {quote(agency.id)}"
            )
        return agency, signed
    return verify(registry, agency.id, raw, signature, key_id), doc


def _tree(raw: bytes) -> Any:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    return etree.fromstring(raw, parser)


def has_xml_signature(raw: bytes) -> bool:
    """True if the document holds an XML-DSig ``<Signature>`` element anywhere."""
    try:
        root = _tree(raw)
    except etree.LxmlError:
        return False
    return next(root.iter(_SIGNATURE), None) is not None


def verify_enveloped(agency: Agency, raw: bytes, *, now: datetime) -> bytes:
    """The canonical bytes of the alert, if ``raw`` is signed by one of ``agency``'s certificates.

    See the module docstring for the rules; raises :class:`BadSignature` with the reason.
    """
    _check_shape(raw)
    if not agency.certificates:
        raise BadSignature(
            f"agency {quote(agency.id)} has no registered certificates to check an XML signature "
            "(register one, or sign with the loa-signature headers)"
        )
    config = SignatureConfiguration(
        require_x509=True,
        location="./",
        expect_references=1,
        signature_methods=_METHODS,
        digest_algorithms=_DIGESTS,
        ignore_ambiguous_key_info=True,
        verification_time=now,
    )
    out_of_date: list[str] = []
    for cert_id, der in agency.certificates.items():
        cert = x509.load_der_x509_certificate(der)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            out_of_date.append(
                f"certificate {quote(cert_id)} is valid only from"
                f" {cert.not_valid_before_utc:%Y-%m-%d}"
                f" to {cert.not_valid_after_utc:%Y-%m-%d}"
            )
            continue
        try:
            result = XMLVerifier().verify(raw, x509_cert=cert, expect_config=config)
        except InvalidDigest:
            # the signature over SignedInfo verified with this certificate: the content changed
            raise BadSignature(
                "the alert was changed after it was signed (digest mismatch)"
            ) from None
        except InvalidInput as exc:  # an algorithm refused, a malformed signature
            raise BadSignature(f"XML signature refused: {_first_line(exc)}") from None
        except InvalidSignature:
            continue  # not this certificate; try the agency's next one
        except (SignXMLException, etree.LxmlError, ValueError, TypeError) as exc:
            raise BadSignature(f"XML signature unreadable: {_first_line(exc)}") from None
        if not isinstance(result, VerifyResult) or not isinstance(result.signed_data, bytes):
            raise BadSignature("XML signature: no signed alert")
        return result.signed_data
    detail = f" ({'; '.join(out_of_date)})" if out_of_date else ""
    raise BadSignature(
        f"the XML signature does not verify with any valid certificate of agency "
        f"{quote(agency.id)}{detail}"
    )


def _check_shape(raw: bytes) -> None:
    """One enveloped signature with one whole-document reference, else :class:`BadSignature`."""
    try:
        root = _tree(raw)
    except etree.LxmlError as exc:
        raise BadSignature(f"XML signature: document unreadable: {_first_line(exc)}") from None
    signatures = list(root.iter(_SIGNATURE))
    if len(signatures) != 1:
        raise BadSignature(
            f"{len(signatures)} XML signatures: exactly one enveloped <Signature> is expected"
        )
    if signatures[0].getparent() is not root:
        raise BadSignature("the <Signature> must be a child of the root <alert> (enveloped)")
    references = signatures[0].findall(_REFERENCE)
    uris = [r.get("URI") for r in references]
    if uris != [""]:
        raise BadSignature(
            'the signature must have exactly one Reference with URI="" (the whole alert), '
            f"it has {', '.join(repr(u) for u in uris) or 'none'}"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
