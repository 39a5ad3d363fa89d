"""Connection security: one builder for every client, secure settings reach each of them, and
no Kafka client is constructed outside ``streams/kafkaio/clients.py``."""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from faust.auth import SASLCredentials, SSLCredentials

from streams.errors import ConfigUnusable
from streams.kafkaio.clients import client_options, faust_broker_options
from streams.kafkaio.security import explain, ssl_context
from streams.settings.load import load_settings
from streams.settings.model import Settings


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA certificate and a client key pair made by openssl."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-subj", "/CN=test-ca"),
        ],
        check=True,
        capture_output=True,
    )
    return {"ca": str(d / "ca.pem"), "cert": str(d / "ca.pem"), "key": str(d / "ca.key")}


def test_plaintext_clients_get_only_the_address() -> None:
    settings = Settings(bootstrap_servers="h:1")
    assert client_options(settings) == {
        "bootstrap_servers": "h:1",
        "security_protocol": "PLAINTEXT",
    }
    faust = faust_broker_options(settings)
    assert faust["broker"] == ["kafka://h:1"] and "broker_credentials" not in faust


def test_sasl_ssl_scram_reaches_aiokafka_and_faust(
    tmp_path: Path, tls_files: dict[str, str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load_settings(
        {
            "LOA_BOOTSTRAP_SERVERS": "a:1,b:2",
            "LOA_SECURITY_PROTOCOL": "SASL_SSL",
            "LOA_SASL_MECHANISM": "SCRAM-SHA-256",
            "LOA_SASL_USERNAME": "worker",
            "LOA_SASL_PASSWORD_FILE": str(secret),
            "LOA_SSL_CA_LOCATION": tls_files["ca"],
        }
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("worker", "s3cret")
    context = options["ssl_context"]
    assert context.check_hostname is True and context.verify_mode == ssl.CERT_REQUIRED
    faust = faust_broker_options(settings)
    assert faust["broker"] == ["kafka://a:1", "kafka://b:2"]
    credentials = faust["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert (credentials.username, credentials.password) == ("worker", "s3cret")
    assert credentials.ssl_context is context


def test_mtls_loads_the_client_certificate(tls_files: dict[str, str]) -> None:
    settings = load_settings(
        {
            "LOA_SECURITY_PROTOCOL": "SSL",
            "LOA_SSL_CA_LOCATION": tls_files["ca"],
            "LOA_SSL_CERTIFICATE_LOCATION": tls_files["cert"],
            "LOA_SSL_KEY_LOCATION": tls_files["key"],
        }
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    credentials = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context is options["ssl_context"]


def test_hostname_check_is_off_only_when_asked(tls_files: dict[str, str]) -> None:
    base = {"LOA_SECURITY_PROTOCOL": "SSL", "LOA_SSL_CA_LOCATION": tls_files["ca"]}
    assert ssl_context(load_settings(base)).check_hostname is True  # type: ignore[union-attr]
    off = load_settings(base | {"LOA_SSL_CHECK_HOSTNAME": "false"})
    context = ssl_context(off)
    assert context is not None
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_REQUIRED)


def test_unreadable_password_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password_file=str(tmp_path / "absent"),
    )
    # ConfigUnusable (exit 78), naming the file (issue 20: it was a ValueError, exit 70)
    with pytest.raises(ConfigUnusable, match=r"LOA_SASL_PASSWORD_FILE=.*absent: cannot read it"):
        client_options(settings)


#: Constructors of Kafka clients; only ``streams/kafkaio/clients.py`` may call them (the raw
#: fetcher's ``AIOKafkaClient`` is built in ``rawkafka`` from the options ``clients`` passes).
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient", "App"}
ALLOWED = {
    ("streams/kafkaio/clients.py", "AIOKafkaProducer"),
    ("streams/kafkaio/clients.py", "AIOKafkaConsumer"),
    ("streams/kafkaio/clients.py", "AIOKafkaAdminClient"),
    ("streams/kafkaio/rawkafka.py", "AIOKafkaClient"),
    ("streams/kafkaio/clients.py", "AIOKafkaClient"),  # make_protocol_client, on client_options()
    ("streams/runtime/app.py", "App"),
}
ROOT = Path(__file__).resolve().parents[2]


def _constructions(path: Path) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLIENTS:
                found.append((name, node))
    return found


def test_no_kafka_client_is_constructed_outside_the_client_factories() -> None:
    elsewhere = []
    # Loa's own clients; the benchmarks' baselines and the tests' readers deliberately share no
    # code with Loa (measured from outside)
    for folder in ("streams",):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for name, call in _constructions(path):
                if (rel, name) not in ALLOWED:
                    elsewhere.append(f"{rel}:{call.lineno}: {name}(...)")
    assert elsewhere == []


def test_the_faust_app_takes_its_broker_and_credentials_from_the_factory() -> None:
    (app_call,) = [
        c for n, c in _constructions(ROOT / "streams" / "runtime" / "app.py") if n == "App"
    ]
    spread = [k.value for k in app_call.keywords if k.arg is None]
    assert any(
        isinstance(v, ast.Call) and getattr(v.func, "id", "") == "faust_broker_options"
        for v in spread
    )
    assert not {k.arg for k in app_call.keywords} & {"broker", "broker_credentials"}


def test_the_raw_client_is_built_only_from_options_it_is_given() -> None:
    calls = [c for n, c in _constructions(ROOT / "streams/kafkaio/rawkafka.py")]
    assert calls and all(not c.args and [k.arg for k in c.keywords] == [None] for c in calls), (
        "AIOKafkaClient(**options) only: the options come from clients.client_options"
    )


def test_refused_connection_is_left_to_the_clis_no_broker_line() -> None:
    exc = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
    logged = "Unable connect to \"127.0.0.1:1\": [Errno 111] Connect call failed ('127.0.0.1', 1)"
    assert explain(exc, [logged]) is None


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        (
            "[Error 58] SaslAuthenticationFailed: Authentication failed during authentication",
            "authentication failed: wrong user name or password",
        ),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
            "issuer certificate (_ssl.c:1006)",
            "not signed by a trusted CA",
        ),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
            "certificate is not valid for 'localhost'. (_ssl.c:1006)",
            "not valid for the host name used",
        ),
        (
            "KafkaConnectionError: Connection at 127.0.0.1:1 closed",
            "the broker closed the connection",
        ),
    ],
)
def test_bootstrap_failure_is_explained_by_its_logged_cause(logged: str, expected: str) -> None:
    exc = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
    line = explain(exc, [f'Unable connect to "127.0.0.1:1": {logged}'])
    assert line is not None and line.startswith("cannot connect to Kafka: ")
    assert expected in line and "\n" not in line


def test_authorization_failure_names_the_topic() -> None:
    line = explain(TopicAuthorizationFailedError("loa.directory.changes"), [])
    assert line == (
        "not authorized: the ACLs do not allow this user on topic loa.directory.changes"
    )


def test_other_errors_are_not_explained() -> None:
    assert explain(ValueError("x"), []) is None
    assert explain(KafkaConnectionError("Connection at 1 closed"), []) is None
