"""Reading settings strictly, at the CLI boundary: ``LOA_*`` variables over an optional TOML file.

Settings fail closed. A boolean is one of true/false/1/0/yes/no (any case) or an error naming its
variable, so ``LOA_REQUIRE_SIGNATURES=ture`` stops the process instead of turning signature checks
off. An unknown ``LOA_*`` variable (or an unknown key of the TOML file) is an error that names the
closest known setting. The ``LOA_*`` variables the repository's own scripts and tests read, which
are not settings, are listed in :data:`NOT_SETTINGS`.

Precedence, lowest first: field defaults, the TOML file (``LOA_CONFIG`` or ``--config``), the
environment, explicit overrides. :func:`describe` prints the effective settings with secrets
redacted.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from streams.settings.model import Settings

__all__ = [
    "NOT_SETTINGS",
    "SECRETS",
    "SettingsError",
    "check_acl_principals",
    "check_files",
    "check_security",
    "describe",
    "load_settings",
    "parse_bool",
    "settings_reference",
]

#: ``LOA_*`` variables that are not settings: read by ``deploy/kafka/*.sh``, the tests, the
#: Dockerfile (schemas path) or this module itself. They pass the unknown-name check.
NOT_SETTINGS = frozenset(
    {
        "LOA_CONFIG",
        "LOA_SCHEMAS_DIR",
        "LOA_MVN",
        "LOA_KAFKA_TOOLS_CACHE",
        "LOA_TOOLS_CACHE",  # deploy/grafana/lint/install.sh: where the dashboard linter is built
        "LOA_VERSION",  # a Docker build argument (Dockerfile), never in a process's environment
        "LOA_CLUSTER_AGENCY",
        "LOA_CLUSTER_DIR",
        "LOA_CLUSTER_PORT",
        "LOA_CLUSTER_START_TIMEOUT",
        "LOA_KAFKA_CACHE",
        "LOA_KAFKA_CONTROLLER_PORT",
        "LOA_KAFKA_DIR",
        "LOA_KAFKA_JAVA",
        "LOA_KAFKA_KEEP_DATA",
        "LOA_KAFKA_PORT",
        "LOA_KAFKA_START_TIMEOUT",
        "LOA_KAFKA_STOP_TIMEOUT",
        "LOA_KAFKA_VERSION",
        "LOA_TEST_KAFKA_PORT",
        "LOA_TEST_CLUSTER_PORT",
        "LOA_MODEL_EXAMPLES",
        "LOA_MODEL_WORKER_EXAMPLES",
        "LOA_SCREENSHOTS",  # tests/browser: where the console's screenshots go
    }
)

#: Fields printed as ``***`` by :func:`describe`.
SECRETS = frozenset({"sasl_password", "ssl_key_password"})

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class SettingsError(ValueError):
    """A setting that cannot be used: unknown name, unparsable value, unreadable file. Poison:
    the process stops with this message; retrying the same configuration cannot help."""

    retriable = False


def variable(name: str) -> str:
    """The environment variable of a settings field."""
    return f"LOA_{name.upper()}"


def parse_bool(name: str, raw: str) -> bool:
    """``true/false/1/0/yes/no`` (any case, surrounding blanks ignored); anything else fails."""
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: not a boolean (use true/false, 1/0 or yes/no)")


def _field_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(Settings)}


_COMMENT = re.compile(r"^    #: ?(.*)$")
_FIELD = re.compile(r"^    (\w+): [^=]+= ")
_VARIABLES = re.compile(r"^(LOA_\w+(?: \([^)]*\))?(?: / LOA_\w+)*): ?")


def settings_reference() -> str:
    """docs/settings.md: every setting with its variable, default and meaning, generated from
    :class:`~streams.settings.model.Settings` (its ``#:`` comments), so the reference cannot drift
    from the object the process reads (``python -m streams.settings.load > docs/settings.md``)."""
    rows: list[tuple[list[str], str]] = []  # (fields, meaning): fields sharing one comment
    comment: list[str] = []
    for line in inspect.getsource(Settings).splitlines():
        if (m := _COMMENT.match(line)) is not None:
            comment.append(m.group(1))
        elif (f := _FIELD.match(line)) is not None:
            if comment or not rows:
                rows.append(([f.group(1)], " ".join(comment)))
            else:  # documented together with the field above it
                rows[-1][0].append(f.group(1))
            comment = []
        elif not line.strip():
            comment = []
    defaults = _field_defaults()
    out = [
        "# Settings",
        "",
        "Generated from `streams/settings/model.py` by",
        "`python -m streams.settings.load > docs/settings.md` (a test checks it is current).",
        "Every setting is a `LOA_*` environment variable or a key of the `--config` TOML file",
        "(the field name in lower case). Unknown names and unparsable values stop the process",
        "with the variable's name (README, Settings).",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for names, meaning in rows:
        text = _VARIABLES.sub("", meaning).replace("|", "\\|").replace("``", "`")
        variables = " / ".join(f"`{variable(n)}`" for n in names)
        shown = " / ".join(_shown_default(defaults[n]) for n in names)
        out.append(f"| {variables} | {shown} | {text} |")
    return "\n".join(out) + "\n"


def _shown_default(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ("", None):
        return "(none)"
    text = str(value).replace(str(Path.home()), "~")
    if isinstance(value, tuple):
        text = ",".join(map(str, value))
    return f"`{text}`"


def _closest(unknown: str, known: list[str]) -> str:
    match = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _from_text(name: str, default: Any, raw: str) -> Any:
    if isinstance(default, bool):
        return parse_bool(name, raw)
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise SettingsError(f"{name}={raw!r}: not {kind}") from None
    return raw


def _from_toml(where: str, default: Any, value: Any) -> Any:
    expected: type = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise SettingsError(f"{where} = {value!r}: expected {expected.__name__}")
    return value


def env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """Typed field values from ``LOA_*`` variables; unknown ``LOA_*`` names are errors."""
    defaults = _field_defaults()
    by_variable = {variable(name): name for name in defaults}
    values: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith("LOA_") or key in NOT_SETTINGS:
            continue
        name = by_variable.get(key)
        if name is None:
            hint = _closest(key, sorted(by_variable) + sorted(NOT_SETTINGS))
            raise SettingsError(f"{key}: unknown setting{hint}")
        values[name] = _from_text(key, defaults[name], raw)
    if "bootstrap_servers" not in values and env.get("KAFKA_BOOTSTRAP_SERVERS"):
        values["bootstrap_servers"] = env["KAFKA_BOOTSTRAP_SERVERS"]
    return values


def file_values(path: Path) -> dict[str, Any]:
    """Typed field values from a TOML file of ``field = value`` lines (names as in Settings,
    lower case, optionally under a ``[loa]`` table)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    table = document.get("loa", document) if set(document) <= {"loa"} else document
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [loa] must be a table")
    defaults = _field_defaults()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in defaults:
            raise SettingsError(f"{path}: {key}: unknown setting{_closest(key, sorted(defaults))}")
        values[key] = _from_toml(f"{path}: {key}", defaults[key], value)
    return values


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from defaults < TOML file < environment < ``overrides``, validated.

    ``config_file`` defaults to ``LOA_CONFIG``; an empty value means no file.
    """
    env = os.environ if env is None else env
    path = config_file if config_file is not None else env.get("LOA_CONFIG") or None
    values: dict[str, Any] = file_values(Path(path)) if path else {}
    values.update(env_values(env))
    values.update(overrides)
    settings = Settings(**values)
    try:
        settings.validate()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    check_security(settings)
    check_acl_principals(settings)
    return settings


def check_acl_principals(settings: Settings) -> None:
    """The ``LOA_ACL_*`` principals are empty or ``User:name`` (agencies: ``User:name=ID``
    pairs), else :class:`SettingsError` naming the variable (exit 2, like any unparsable
    setting): a typo there would grant a principal nobody connects as, and no broker would
    say so."""
    try:
        settings.acl_principal("worker")
        settings.acl_principal("operator")
        settings.acl_agencies  # noqa: B018 (raises when unusable)
    except ValueError as exc:
        hint = "a Kafka principal is User:<name> (docs/operations.md: ACLs)"
        raise SettingsError(f"{exc}; {hint}") from None


def check_security(settings: Settings) -> None:
    """The connection settings name a known protocol and mechanism and carry what they need."""
    protocol, mechanism = settings.security_protocol, settings.sasl_mechanism
    if protocol not in PROTOCOLS:
        hint = _closest(protocol.upper(), list(PROTOCOLS))
        raise SettingsError(f"LOA_SECURITY_PROTOCOL={protocol!r}: not one of {PROTOCOLS}{hint}")
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            hint = _closest(mechanism.upper(), list(MECHANISMS))
            raise SettingsError(f"LOA_SASL_MECHANISM={mechanism!r}: not one of {MECHANISMS}{hint}")
        if not settings.sasl_username:
            raise SettingsError(f"LOA_SASL_USERNAME is required with {protocol}")
        if bool(settings.sasl_password) == bool(settings.sasl_password_file):
            raise SettingsError(
                f"{protocol} needs exactly one of LOA_SASL_PASSWORD and LOA_SASL_PASSWORD_FILE"
            )
    if bool(settings.ssl_certificate_location) != bool(settings.ssl_key_location):
        raise SettingsError(
            "LOA_SSL_CERTIFICATE_LOCATION and LOA_SSL_KEY_LOCATION go together (mTLS)"
        )
    uses_tls = protocol in ("SSL", "SASL_SSL")
    tls_only = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    if not uses_tls and any(getattr(settings, name) for name in tls_only):
        raise SettingsError(f"TLS files are set but LOA_SECURITY_PROTOCOL={protocol} has no TLS")


#: Fields whose empty value means "derived": :func:`describe` shows what is in use.
def _effective(settings: Settings) -> dict[str, Any]:
    instance = settings.group_instance_id
    return {
        "data_dir": settings.resolved_data_dir,
        "instance_id": "none" if instance is None else instance,
        "agencies_dir": settings.resolved_agencies_dir,
    }


def describe(settings: Settings) -> list[str]:
    """``LOA_<FIELD>=value`` lines of every field as the process uses it (a derived value such
    as ``LOA_DATA_DIR`` or ``LOA_INSTANCE_ID`` shown resolved), secrets as ``***`` when set."""
    lines = []
    effective = _effective(settings)
    for f in fields(settings):
        value = effective.get(f.name) or getattr(settings, f.name)
        if f.name in SECRETS and value:
            shown = "***"
        elif isinstance(value, bool):
            shown = str(value).lower()
        else:
            shown = str(value)
        lines.append(f"{variable(f.name)}={shown}")
    return lines


#: Settings naming a file a process reads, with what it must be.
_FILES = (
    ("sasl_password_file", "the SASL password"),
    ("ssl_ca_location", "the CA of the brokers' certificates"),
    ("ssl_certificate_location", "the client certificate"),
    ("ssl_key_location", "the client certificate's key"),
    ("gateway_tls_cert", "the gateway's certificate chain"),
    ("gateway_tls_key", "the gateway's key"),
    ("gateway_tls_client_ca", "the CA of the gateway's clients"),
    ("delivery_http_bearer_token_file", "the http provider's bearer token"),
    ("delivery_http_password_file", "the http provider's basic-auth password"),
    ("delivery_http_ca_file", "the CA of the http provider's certificate"),
    ("delivery_http_cert_file", "the client certificate shown to the http provider"),
    ("delivery_http_key_file", "the key of that client certificate"),
)


def check_files(settings: Settings) -> list[str]:
    """Open every file and directory the settings name, as this process's user: one line per
    path that is usable; :class:`~streams.errors.ConfigUnusable` (exit 78) naming the first
    that is not. ``loa config --check`` runs it (a pod's init step, or by hand)."""
    from streams.errors import ConfigUnusable
    from streams.kafkaio.security import sasl_password, ssl_context, unreadable

    lines = []
    for name, what in _FILES:
        path = getattr(settings, name)
        if not path:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise unreadable(variable(name), path, exc) from None
        lines.append(f"ok  {variable(name)}={path} ({what})")
    if settings.sasl_password_file:
        sasl_password(settings)  # empty or not text: named
    ssl_context(settings)  # PEM that does not parse, a key that does not fit: named
    agencies = Path(settings.resolved_agencies_dir)
    if not agencies.exists() or not os.access(agencies, os.R_OK):
        raise ConfigUnusable(f"LOA_AGENCIES_DIR={agencies}: not a readable file or directory")
    lines.append(f"ok  LOA_AGENCIES_DIR={agencies} (agency files for loa init)")
    data = Path(settings.resolved_data_dir)
    existing = next((p for p in (data, *data.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigUnusable(f"LOA_DATA_DIR={data}: {existing} is not writable by this user")
    lines.append(f"ok  LOA_DATA_DIR={data} (worker state; writable)")
    return lines


if __name__ == "__main__":
    print(settings_reference(), end="")
