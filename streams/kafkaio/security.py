"""Connection security of every Kafka client Loa builds, made in one place.

Where it sits: under :mod:`streams.kafkaio.clients`, whose factories give every aiokafka
producer, consumer, admin client and raw client these options, and the Faust app its
``broker_credentials``, so no client can be left on PLAINTEXT by mistake;
``tests/unit/test_security.py`` fails if a client is constructed anywhere else. Settings are
named after librdkafka (``LOA_SECURITY_PROTOCOL``, ``LOA_SASL_MECHANISM``,
``LOA_SSL_CA_LOCATION``...) and checked by ``streams.config``.

TLS: hostname verification is on unless ``LOA_SSL_CHECK_HOSTNAME=false``; the CA file replaces
the system trust store when given; a client certificate and key make it mTLS.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from streams.settings import Settings

__all__ = [
    "explain",
    "failures_explained",
    "faust_credentials",
    "sasl_password",
    "security_options",
    "ssl_context",
]


def sasl_password(settings: Settings) -> str:
    """``LOA_SASL_PASSWORD``, or the first line of ``LOA_SASL_PASSWORD_FILE``."""
    if settings.sasl_password_file:
        path = Path(settings.sasl_password_file)
        try:
            return path.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            raise ValueError(f"LOA_SASL_PASSWORD_FILE={path}: cannot read a password") from None
    return settings.sasl_password


@cache
def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise), shared by every client."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_ca_location or None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED  # the chain is always verified, even without host
    if settings.ssl_certificate_location:
        context.load_cert_chain(
            settings.ssl_certificate_location,
            settings.ssl_key_location,
            password=settings.ssl_key_password or None,
        )
    return context


def security_options(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of every aiokafka client (producer, consumer, admin,
    raw); :func:`streams.kafkaio.clients.client_options` adds the address."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def faust_credentials(settings: Settings) -> dict[str, Any]:
    """``broker_credentials`` of ``faust.App`` for the same connection (none for PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials
    from faust.types.auth import SASLMechanism

    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        credentials = SASLCredentials(
            username=settings.sasl_username,
            password=sasl_password(settings),
            mechanism=SASLMechanism(settings.sasl_mechanism),
            ssl_context=context,
        )
        return {"broker_credentials": credentials}
    if context is not None:
        return {"broker_credentials": SSLCredentials(context)}
    return {}


class _LastErrors(logging.Handler):
    """Keeps the causes aiokafka logs while bootstrapping (it raises without them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def failures_explained() -> Iterator[Callable[[BaseException], str | None]]:
    """Within the block, aiokafka's own warnings are kept instead of printed; the yielded
    function turns a connection, TLS, authentication or authorization failure into one line
    for people (``None`` for any other exception)."""
    handler = _LastErrors()
    logger = logging.getLogger("aiokafka")
    logger.addHandler(handler)
    try:
        yield lambda exc: explain(exc, handler.messages)
    finally:
        logger.removeHandler(handler)


_HINTS = (
    ("SaslAuthenticationFailed", "authentication failed: wrong user name or password"),
    ("unable to get local issuer", "the broker's certificate is not signed by a trusted CA"),
    ("self-signed certificate", "the broker's certificate is not signed by a trusted CA"),
    ("Hostname mismatch", "the broker's certificate is not valid for the host name used"),
    ("IP address mismatch", "the broker's certificate is not valid for the address used"),
    ("certificate has expired", "a certificate has expired"),
    ("certificate expired", "the broker refused the client certificate: it has expired"),
    ("unknown ca", "the broker refused the client certificate: unknown CA"),
    ("certificate required", "the broker requires a client certificate (mTLS)"),
    # TLS 1.3 reports a refused client certificate after the handshake: the client only sees
    # the connection close, not why
    (
        "closed",
        "the broker closed the connection (is the listener's protocol LOA_SECURITY_PROTOCOL, "
        "and a client certificate, if it asks for one, valid, unexpired and from its CA?)",
    ),
)


def explain(exc: BaseException, logged: list[str]) -> str | None:
    """One line for a Kafka failure a person can fix (address, TLS, password, ACL)."""
    name = type(exc).__name__
    if "AuthorizationFailed" in name:
        what = name.removesuffix("Error").removesuffix("AuthorizationFailed").lower()
        subject = ", ".join(str(arg) for arg in exc.args) or "the cluster"
        return f"not authorized: the ACLs do not allow this user on {what} {subject}"
    if name != "KafkaConnectionError" or "bootstrap" not in str(exc):
        return None
    causes = [m.split(": ", 1)[1] for m in logged if m.startswith("Unable connect to")]
    causes = [c.removeprefix("KafkaConnectionError: ") for c in causes]
    cause = causes[-1] if causes else ""
    for needle, hint in _HINTS:
        if needle.lower() in cause.lower():
            return f"cannot connect to Kafka: {hint} ({cause.strip()})"
    # nothing a person can fix beyond "is it running, is the address right": the CLI's own
    # line says that with the address and what to do (streams.clikit.classify)
    return None
