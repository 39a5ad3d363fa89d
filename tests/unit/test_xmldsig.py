"""XML-DSig authentication of CAP alerts (issue 11 item 6): the classic attacks end as
``bad_signature`` with a reason, a valid signature by a pinned certificate is accepted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree

from streams.errors import InvalidAgency, RejectionCode
from streams.ingest.agencies import Agency, AgencyRegistry, parse_agency
from streams.ingest.cap import parse_cap
from streams.ingest.core import Accepted, Rejected, decide
from streams.ingest.signatures import new_key_pair as new_ed25519
from streams.ingest.signatures import signature_headers
from streams.ingest.xmldsig import verify_enveloped
from streams.regions import registry
from tests.tools.xmlsigning import Signer, cap_alert, cert_pem, new_signer, sign_xml

NATIONAL_ID, PROVINCE_ID = "nchmf.gov.vn", "ubnd.quangninh.gov.vn"
NATIONAL_SIGNER = new_signer(NATIONAL_ID)
SECOND_SIGNER = new_signer(NATIONAL_ID)
PROVINCE_SIGNER = new_signer(PROVINCE_ID)
EXPIRED_SIGNER = new_signer(NATIONAL_ID, days=30, start_days_ago=400)
ED_KEY = new_ed25519(NATIONAL_ID, "nchmf/1")
DS = "{http://www.w3.org/2000/09/xmldsig#}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def _agency(agency_id: str, *signers: Signer, jurisdiction: str = "VN") -> Agency:
    return parse_agency(
        {
            "id": agency_id,
            "name": agency_id,
            "keys": {ED_KEY.key_id: ED_KEY.public_key_b64} if agency_id == NATIONAL_ID else {},
            "certificates": {f"cert-{i}": cert_pem(s) for i, s in enumerate(signers)},
            "jurisdiction": [jurisdiction],
            "allowed_statuses": ["Actual"],
            "max_severity": "Extreme",
        }
    )


REGISTRY = AgencyRegistry.of(
    _agency(NATIONAL_ID, NATIONAL_SIGNER, SECOND_SIGNER, EXPIRED_SIGNER),
    _agency(PROVINCE_ID, PROVINCE_SIGNER, jurisdiction="VN-22"),
)


def _decide(raw: bytes, headers: Any = None, agencies: AgencyRegistry = REGISTRY) -> Any:
    return decide(
        raw,
        regions=registry(),
        partitions=2,
        max_bytes=256 * 1024,
        agencies=agencies,
        headers=headers,
        now=datetime.now(UTC),
    )


def _refused(raw: bytes, reason: str, **kw: Any) -> None:
    decision = _decide(raw, **kw)
    assert isinstance(decision, Rejected), decision
    assert decision.code is RejectionCode.BAD_SIGNATURE
    assert reason in decision.message


def _signed(identifier: str = "X-1", signer: Signer = NATIONAL_SIGNER, **kw: Any) -> bytes:
    return sign_xml(cap_alert(identifier, NATIONAL_ID), signer, **kw)


def test_alert_signed_by_a_pinned_certificate_is_accepted_without_loa_headers() -> None:
    decision = _decide(_signed())
    assert isinstance(decision, Accepted), decision
    assert decision.alert.message_id == f"{NATIONAL_ID}/X-1"
    assert decision.alert.targets == ("VN-22",)


def test_any_of_the_agencys_certificates_verifies() -> None:
    assert isinstance(_decide(_signed(signer=SECOND_SIGNER)), Accepted)


def test_loa_headers_still_authenticate_a_cap_alert_of_an_agency_with_certificates() -> None:
    raw = cap_alert("X-2", NATIONAL_ID)
    assert isinstance(_decide(raw, headers=signature_headers(ED_KEY, raw)), Accepted)


def test_unsigned_cap_alert_is_bad_signature() -> None:
    _refused(cap_alert("X-3", NATIONAL_ID), "no loa-signature header")


def test_alert_changed_after_signing_is_bad_signature() -> None:
    raw = _signed().replace(b"test area", b"other area")
    _refused(raw, "changed after it was signed")


def test_signed_alert_wrapped_under_a_forged_alert_is_bad_signature() -> None:
    # the genuine signed alert hidden in a foreign element of a forged alert for everyone
    genuine = etree.fromstring(_signed())
    forged = etree.fromstring(cap_alert("FORGED", NATIONAL_ID, region="VN"))
    wrapper = etree.SubElement(forged, "{urn:evil}wrapper")
    wrapper.append(genuine)
    _refused(etree.tostring(forged), "must be a child of the root <alert>")


def test_signature_moved_onto_a_forged_alert_is_bad_signature() -> None:
    genuine = etree.fromstring(_signed())
    forged = etree.fromstring(cap_alert("X-1", NATIONAL_ID, region="VN"))
    forged.append(genuine.find(f"{DS}Signature"))
    _refused(etree.tostring(forged), "changed after it was signed")


def test_second_signature_is_bad_signature() -> None:
    doc = etree.fromstring(_signed())
    doc.append(etree.fromstring(_signed("X-9")).find(f"{DS}Signature"))
    _refused(etree.tostring(doc), "2 XML signatures")


def test_signature_over_a_different_reference_is_bad_signature() -> None:
    # The signature covers an element with an Id (a copy of a harmless alert), not the alert.
    doc = etree.fromstring(cap_alert("X-4", NATIONAL_ID, region="VN"))
    decoy = etree.SubElement(doc, "{urn:evil}signed", Id="harmless")
    decoy.text = "a harmless text the agency once signed"
    signed = etree.fromstring(
        sign_xml(etree.tostring(doc), NATIONAL_SIGNER, reference_uri="#harmless")
    )
    _refused(etree.tostring(signed), 'exactly one Reference with URI=""')


def test_certificate_of_another_agency_is_bad_signature() -> None:
    _refused(_signed(signer=PROVINCE_SIGNER), "does not verify with any valid certificate")


def test_certificate_carried_in_keyinfo_is_not_trusted() -> None:
    _refused(_signed(signer=new_signer(NATIONAL_ID)), "does not verify with any valid certificate")


def test_expired_certificate_is_bad_signature_naming_its_validity() -> None:
    _refused(_signed(signer=EXPIRED_SIGNER), '"cert-2" is valid only from')


def test_sha1_digest_is_bad_signature() -> None:
    _refused(_signed(digest="sha1"), "Digest algorithm SHA1 forbidden")


def test_rsa_sha1_signature_method_is_bad_signature() -> None:
    _refused(_signed(method="rsa-sha1"), "Signature method RSA_SHA1 forbidden")


def test_signed_alert_of_an_agency_without_certificates_is_bad_signature() -> None:
    raw = sign_xml(cap_alert("X-5", PROVINCE_ID), NATIONAL_SIGNER)
    bare = AgencyRegistry.of(_agency(PROVINCE_ID, jurisdiction="VN-22"))
    _refused(raw, "has no registered certificates", agencies=bare)


def test_a_comment_added_after_signing_changes_nothing_in_the_accepted_alert() -> None:
    # comments are outside the canonical form the digest covers: the alert is the signed one
    raw = _signed().replace(b"<headline>", b"<headline><!-- unsigned -->")
    decision = _decide(raw)
    assert isinstance(decision, Accepted), decision
    assert decision.alert.infos[0].headline == "Bão"


def test_verification_returns_the_canonical_signed_alert_without_its_signature() -> None:
    raw = _signed()
    verified = verify_enveloped(REGISTRY.agencies[NATIONAL_ID], raw, now=datetime.now(UTC))
    assert verified.startswith(b"<alert") and b"Signature" not in verified
    assert parse_cap(verified, max_bytes=1 << 20) == parse_cap(raw, max_bytes=1 << 20)


def test_agency_record_refuses_a_weak_or_unreadable_certificate() -> None:
    doc = REGISTRY.agencies[NATIONAL_ID].to_doc()
    assert parse_agency(doc).certificates == REGISTRY.agencies[NATIONAL_ID].certificates
    with pytest.raises(InvalidAgency, match=r"not PEM X\.509"):
        parse_agency({**doc, "certificates": {"c": "-----BEGIN CERTIFICATE-----\nxx"}})
