"""Test helpers for XML-DSig: throwaway certificates and CAP alerts signed with signxml.

Every key and certificate is generated at run time; nothing secret is committed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import DigestAlgorithm, SignatureMethod

Signer = tuple[rsa.RSAPrivateKey, x509.Certificate]


def new_signer(name: str, *, days: int = 365, start_days_ago: int = 1) -> Signer:
    """A 2048-bit RSA key and a self-signed certificate for ``name``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(UTC) - timedelta(days=start_days_ago)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def cert_pem(signer: Signer) -> str:
    return signer[1].public_bytes(serialization.Encoding.PEM).decode()


def cap_alert(identifier: str, sender: str, region: str = "VN-22", headline: str = "Bão") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{sender}</sender>
  <sent>2026-11-23T08:00:00+07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>vi-VN</language>
    <category>Met</category>
    <event>Bão</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <headline>{headline}</headline>
    <area>
      <areaDesc>test area</areaDesc>
      <geocode><valueName>LOA</valueName><value>{region}</value></geocode>
    </area>
  </info>
</alert>
""".encode()


class _AnySigner(XMLSigner):
    """signxml's signer without its refusal of SHA-1: only to prove the verifier refuses it."""

    def check_deprecated_methods(self) -> None:
        return None


def sign_xml(
    raw: bytes,
    signer: Signer,
    *,
    digest: str = "sha256",
    method: str = "rsa-sha256",
    reference_uri: str | None = None,
) -> bytes:
    """``raw`` with an enveloped XML-DSig signature (certificate in KeyInfo) as its last child."""
    xml_signer = _AnySigner(
        signature_algorithm=SignatureMethod.from_fragment(method),
        digest_algorithm=DigestAlgorithm.from_fragment(digest),
    )
    root = etree.fromstring(raw)
    signed = xml_signer.sign(root, key=signer[0], cert=[signer[1]], reference_uri=reference_uri)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
