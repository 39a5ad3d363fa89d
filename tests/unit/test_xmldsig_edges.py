"""XML-DSig at its edges (``streams.ingest.xmldsig``, pure): what the parser of the signature
check refuses to expand, certificate validity to the second, the algorithms signxml would
allow by default and Loa does not, and the exact reasons an agency is told."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lxml import etree

from streams.errors import BadSignature
from streams.ingest.agencies import Agency, AgencyRegistry, parse_agency
from streams.ingest.xmldsig import _first_line, authenticate, has_xml_signature, verify_enveloped
from tests.tools.xmlsigning import Signer, cap_alert, cert_pem, new_signer, sign_xml

AGENCY_ID = "nchmf.gov.vn"
SIGNER = new_signer(AGENCY_ID)
OLD_SIGNER = new_signer(AGENCY_ID, days=30, start_days_ago=400)
DS = "http://www.w3.org/2000/09/xmldsig#"
NOW = datetime.now(UTC)


def _agency(*signers: Signer) -> Agency:
    return parse_agency(
        {
            "id": AGENCY_ID,
            "name": AGENCY_ID,
            "keys": {},
            "certificates": {f"cert-{i}": cert_pem(s) for i, s in enumerate(signers)},
            "jurisdiction": ["VN"],
            "allowed_statuses": ["Actual"],
            "max_severity": "Extreme",
        }
    )


def _signed(signer: Signer = SIGNER, **kw: Any) -> bytes:
    return sign_xml(cap_alert("X-1", AGENCY_ID), signer, **kw)


def _refused(raw: bytes, agency: Agency, now: datetime = NOW) -> str:
    with pytest.raises(BadSignature) as refused:
        verify_enveloped(agency, raw, now=now)
    return refused.value.message


def test_an_entity_is_not_expanded_into_a_signature() -> None:
    raw = (
        b"<!DOCTYPE alert [<!ENTITY s \"<Signature xmlns='" + DS.encode() + b"'/>\">]>"
        b"<alert>&s;</alert>"
    )
    assert has_xml_signature(raw) is False
    assert has_xml_signature(b'<alert><Signature xmlns="' + DS.encode() + b'"/></alert>')


def test_a_document_deeper_than_libxml2s_limit_is_unreadable() -> None:
    deep = b"<a>" * 300 + b'<Signature xmlns="' + DS.encode() + b'"/>' + b"</a>" * 300
    assert has_xml_signature(deep) is False
    message = _refused(deep, _agency(SIGNER))
    assert message.startswith("XML signature: document unreadable: ")
    assert len(message) > len("XML signature: document unreadable: ")


def test_text_that_is_no_xml_has_no_signature_and_is_unreadable() -> None:
    assert has_xml_signature(b"not xml") is False
    assert _refused(b"<alert><", _agency(SIGNER)).startswith("XML signature: document unreadable: ")


def test_a_signature_below_the_root_is_refused_with_the_rule() -> None:
    doc = etree.fromstring(_signed())
    signature = doc.find(f"{{{DS}}}Signature")
    holder = etree.SubElement(doc, "{urn:x}holder")
    holder.append(signature)
    assert _refused(etree.tostring(doc), _agency(SIGNER)) == (
        "the <Signature> must be a child of the root <alert> (enveloped)"
    )


def test_a_signature_without_references_names_none() -> None:
    doc = etree.fromstring(_signed())
    info = doc.find(f"{{{DS}}}Signature/{{{DS}}}SignedInfo")
    for reference in info.findall(f"{{{DS}}}Reference"):
        info.remove(reference)
    assert _refused(etree.tostring(doc), _agency(SIGNER)) == (
        'the signature must have exactly one Reference with URI="" (the whole alert), it has none'
    )
    second = etree.SubElement(info, f"{{{DS}}}Reference", URI="#a")
    info.append(etree.fromstring(etree.tostring(second)))
    second.set("URI", "")
    assert _refused(etree.tostring(doc), _agency(SIGNER)).endswith("it has '', '#a'")


def test_an_agency_without_certificates_is_told_how_to_sign() -> None:
    assert _refused(_signed(), _agency()) == (
        'agency "nchmf.gov.vn" has no registered certificates to check an XML signature '
        "(register one, or sign with the loa-signature headers)"
    )


def test_a_change_after_signing_is_named_a_digest_mismatch() -> None:
    raw = _signed().replace(b"test area", b"other area")
    assert _refused(raw, _agency(SIGNER)) == (
        "the alert was changed after it was signed (digest mismatch)"
    )


def test_a_certificate_verifies_from_its_first_to_its_last_second() -> None:
    cert = SIGNER[1]
    agency = _agency(SIGNER)
    for now in (cert.not_valid_before_utc, cert.not_valid_after_utc):
        assert verify_enveloped(agency, _signed(), now=now)
    before = cert.not_valid_before_utc - timedelta(seconds=1)
    assert "is valid only from" in _refused(_signed(), agency, now=before)


def test_validity_is_judged_at_the_given_instant_not_the_wall_clock() -> None:
    inside = OLD_SIGNER[1].not_valid_before_utc + timedelta(days=1)
    assert verify_enveloped(_agency(OLD_SIGNER), _signed(OLD_SIGNER), now=inside)


def test_an_out_of_date_certificate_does_not_stop_the_search_for_a_valid_one() -> None:
    agency = _agency(OLD_SIGNER, SIGNER)
    assert verify_enveloped(agency, _signed(), now=NOW)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"digest": "sha224"}, "Digest algorithm SHA224 forbidden"),
        ({"method": "rsa-sha224"}, "Signature method RSA_SHA224 forbidden"),
    ],
)
def test_sha224_that_signxml_allows_by_default_is_refused(kw: dict[str, str], reason: str) -> None:
    message = _refused(_signed(**kw), _agency(SIGNER))
    assert message.startswith("XML signature refused: ")
    assert reason in message


def test_the_signed_alert_must_name_the_agency_whose_certificate_verified_it() -> None:
    """``authenticate`` is given the alert as parsed (``doc``) and the raw bytes: an alert
    whose signed bytes name another sender is refused, however ``doc`` names it."""
    raw = sign_xml(cap_alert("X-1", "other.gov.vn"), SIGNER)
    registry = AgencyRegistry.of(_agency(SIGNER))
    with pytest.raises(BadSignature) as refused:
        authenticate(
            registry,
            {"sender": AGENCY_ID},
            raw,
            None,
            xml=True,
            now=NOW,
            max_bytes=1 << 18,
        )
    assert refused.value.message == (
        'the signed alert names sender "other.gov.vn", not "nchmf.gov.vn"'
    )
    agency, signed = authenticate(
        registry, {"sender": AGENCY_ID}, _signed(), None, xml=True, now=NOW, max_bytes=1 << 18
    )
    assert agency.id == AGENCY_ID
    assert signed["sender"] == AGENCY_ID


def _b64_int(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def test_a_key_value_beside_the_certificate_in_keyinfo_changes_nothing() -> None:
    """KeyInfo is outside what is signed and the pinned certificate decides: a KeyValue of
    another key added beside the X509Data (signxml refuses that as ambiguous unless told to
    ignore it) neither breaks the signature nor replaces its key."""
    doc = etree.fromstring(_signed())
    key_info = doc.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo")
    rsa_value = etree.SubElement(
        etree.SubElement(key_info, f"{{{DS}}}KeyValue"), f"{{{DS}}}RSAKeyValue"
    )
    numbers = new_signer("stranger.example")[0].public_key().public_numbers()  # another key
    etree.SubElement(rsa_value, f"{{{DS}}}Modulus").text = _b64_int(numbers.n)
    etree.SubElement(rsa_value, f"{{{DS}}}Exponent").text = _b64_int(numbers.e)
    assert verify_enveloped(_agency(SIGNER), etree.tostring(doc), now=NOW)


def test_a_signature_signxml_cannot_read_says_why() -> None:
    doc = etree.fromstring(_signed())
    key_info = doc.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo")
    etree.SubElement(etree.SubElement(key_info, f"{{{DS}}}KeyValue"), f"{{{DS}}}RSAKeyValue")
    message = _refused(etree.tostring(doc), _agency(SIGNER))
    assert message.startswith("XML signature unreadable: Element '{" + DS + "}RSAKeyValue'")


def test_no_certificate_verifying_lists_those_out_of_date() -> None:
    stranger = new_signer("stranger.example")
    expected = (
        'the XML signature does not verify with any valid certificate of agency "nchmf.gov.vn"'
    )
    assert _refused(_signed(stranger), _agency(SIGNER)) == expected
    old = OLD_SIGNER[1]
    span = f"{old.not_valid_before_utc:%Y-%m-%d} to {old.not_valid_after_utc:%Y-%m-%d}"
    message = _refused(_signed(stranger), _agency(OLD_SIGNER, SIGNER, OLD_SIGNER))
    assert message == (
        f'{expected} (certificate "cert-0" is valid only from {span};'
        f' certificate "cert-2" is valid only from {span})'
    )


def test_the_first_line_of_a_reason_is_kept_up_to_200_characters() -> None:
    assert _first_line(ValueError()) == "ValueError"
    assert _first_line(ValueError("a\nb")) == "a"
    assert _first_line(ValueError("x" * 300)) == "x" * 200


def test_an_unreadable_document_quotes_the_parsers_reason() -> None:
    message = _refused(b"<alert><", _agency(SIGNER))
    assert "line 1" in message
