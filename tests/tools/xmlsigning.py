"""Test helpers for XML-DSig: throwaway certificates and CAP alerts signed with signxml.

Every key and certificate is generated at run time; nothing secret is committed.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import DigestAlgorithm, SignatureMethod

Signer = tuple[rsa.RSAPrivateKey, x509.Certificate]


def new_signer(
    name: str,
    *,
    days: int = 365,
    start_days_ago: int = 1,
    issuer: Signer | None = None,
    ca: bool = False,
    ip: str | None = None,
) -> Signer:
    """A 2048-bit RSA key and a certificate for ``name``, self-signed unless ``issuer`` signs
    it; ``ca`` makes it a CA, ``ip`` adds that IP address as subject alternative name."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(UTC) - timedelta(days=start_days_ago)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


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


def tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
    files in ``directory``: ``ca``, ``server_cert``, ``server_key``, ``client_cert``,
    ``client_key``."""
    ca = new_signer("Loa test CA", ca=True)
    files: dict[str, Path] = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    for role, ip in (("server", "127.0.0.1"), ("client", None)):
        key, cert = new_signer(f"loa-{role}", days=30, issuer=ca, ip=ip)
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = directory / f"{role}.key"
        files[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files
