"""Connection security of every Kafka client Loa builds, made in one place.

Where it sits: under :mod:`streams.kafkaio.clients`, whose factories give every aiokafka
producer, consumer, admin client and raw client these options, and the Faust app its
``broker_credentials``, so no client can be left on PLAINTEXT by mistake;
``tests/unit/test_security.py`` fails if a client is constructed anywhere else. Settings are
named after librdkafka (``LOA_SECURITY_PROTOCOL``, ``LOA_SASL_MECHANISM``,
``LOA_SSL_CA_LOCATION``...) and checked by ``streams.settings.load``.

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

from streams.errors import ConfigUnusable
from streams.settings.model import Settings

__all__ = [
    "explain",
    "failures_explained",
    "faust_credentials",
    "listener_mismatch",
    "sasl_password",
    "security_options",
    "ssl_context",
    "unreadable",
]


def sasl_password(settings: Settings) -> str:
    """``LOA_SASL_PASSWORD``, or the first line of ``LOA_SASL_PASSWORD_FILE``; a file that
    cannot be read, or holds no password, is :class:`ConfigUnusable` naming it (exit 78)."""
    if settings.sasl_password_file:
        path = Path(settings.sasl_password_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise unreadable("LOA_SASL_PASSWORD_FILE", path, exc) from None
        except UnicodeDecodeError:
            raise ConfigUnusable(f"LOA_SASL_PASSWORD_FILE={path}: not UTF-8 text") from None
        if not lines or not lines[0]:
            raise ConfigUnusable(f"LOA_SASL_PASSWORD_FILE={path}: the file is empty")
        return lines[0]
    return settings.sasl_password


def unreadable(variable: str, path: Path | str, exc: OSError) -> ConfigUnusable:
    """The error of a file a setting names that this process cannot open: its variable, its
    path and why (in a pod: a Secret mounted with a mode the pod's user cannot read)."""
    import os

    why = exc.strerror or type(exc).__name__
    return ConfigUnusable(
        f"{variable}={path}: cannot read it ({why}; running as uid {os.getuid()})"
    )


#: The settings that name a file the Kafka clients read, in the order a connection reads them.
TLS_FILES = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")


def _check_readable(settings: Settings) -> None:
    """Open each TLS file the settings name, so an unreadable one is named by its variable and
    path (``ssl`` reports a bare ``FileNotFoundError`` or ``SSLError`` without the name)."""
    for name in TLS_FILES:
        path = getattr(settings, name)
        if not path:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise unreadable(f"LOA_{name.upper()}", path, exc) from None


@cache
def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise), shared by every client."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    _check_readable(settings)
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_ca_location or None
        )
    except ssl.SSLError as exc:
        where = settings.ssl_ca_location or "the system trust store"
        raise ConfigUnusable(f"LOA_SSL_CA_LOCATION={where}: not a PEM CA ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED  # the chain is always verified, even without host
    if settings.ssl_certificate_location:
        try:
            context.load_cert_chain(
                settings.ssl_certificate_location,
                settings.ssl_key_location,
                password=settings.ssl_key_password or None,
            )
        except ssl.SSLError as exc:
            raise ConfigUnusable(
                f"LOA_SSL_CERTIFICATE_LOCATION={settings.ssl_certificate_location}, "
                f"LOA_SSL_KEY_LOCATION={settings.ssl_key_location}: not a certificate and its "
                f"key, or a wrong LOA_SSL_KEY_PASSWORD ({exc})"
            ) from None
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
    # line says that with the address and what to do (streams.cli.kit.classify)
    return None


#: ApiVersions v0 request (api key 18), correlation id 0x4c4f41 ("LOA"), client id "loa-probe":
#: the first request of every Kafka client; a PLAINTEXT listener answers it at once.
_API_VERSIONS = bytes.fromhex("00120000004c4f410009") + b"loa-probe"
_PROBE = len(_API_VERSIONS).to_bytes(4, "big") + _API_VERSIONS


def _answers_plaintext(host: str, port: int, timeout_s: float) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_PROBE)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    return head[4:8] == _API_VERSIONS[4:8]  # our correlation id: a Kafka answer in the clear


def _answers_tls(host: str, port: int, timeout_s: float) -> bool:
    import socket

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a probe of the protocol only; nothing is sent
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def listener_mismatch(settings: Settings, *, timeout_s: float = 2.0) -> str | None:
    """After a failed connection: whether the first bootstrap server speaks another protocol
    than ``LOA_SECURITY_PROTOCOL`` (a TLS or SASL client at a PLAINTEXT listener, a PLAINTEXT
    client at a TLS listener), as one line naming both; None when it cannot tell."""
    protocol = settings.security_protocol
    first = settings.bootstrap_servers.split(",")[0].strip()
    host, _, port_text = first.rpartition(":")
    if not host or not port_text.isdigit():
        return None
    host, port = host.strip("[]"), int(port_text)
    if protocol != "PLAINTEXT" and _answers_plaintext(host, port, timeout_s):
        return f"the broker at {first} speaks PLAINTEXT; LOA_SECURITY_PROTOCOL is {protocol}"
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and _answers_tls(host, port, timeout_s):
        return f"the broker at {first} speaks TLS; LOA_SECURITY_PROTOCOL is {protocol}"
    return None
