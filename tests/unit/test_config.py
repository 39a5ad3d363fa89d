"""Strict settings: booleans, unknown names, the TOML file, redaction, ``loa config``."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams import __version__
from streams.cli import main
from streams.settings.load import NOT_SETTINGS, SettingsError, describe, load_settings, parse_bool
from streams.settings.model import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("word", ["true", "TRUE", " yes ", "1", "Yes"])
def test_true_words_parse_as_true(word: str) -> None:
    assert parse_bool("LOA_X", word) is True


@pytest.mark.parametrize("word", ["false", "False", "no", "0", " NO"])
def test_false_words_parse_as_false(word: str) -> None:
    assert parse_bool("LOA_X", word) is False


@pytest.mark.parametrize("word", ["ture", "on", "off", "", "2", "enabled"])
def test_require_signatures_typo_is_an_error_naming_the_variable(word: str) -> None:
    with pytest.raises(SettingsError, match=r"LOA_REQUIRE_SIGNATURES=.*not a boolean"):
        load_settings({"LOA_REQUIRE_SIGNATURES": word})


def test_unknown_variable_is_an_error_with_the_closest_name() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"LOA_REQUIRE_SIGNATURE": "true"})
    assert str(info.value) == (
        "LOA_REQUIRE_SIGNATURE: unknown setting (did you mean LOA_REQUIRE_SIGNATURES?)"
    )


def test_unknown_variable_far_from_every_name_is_still_an_error() -> None:
    with pytest.raises(SettingsError, match=r"LOA_ZZZ: unknown setting$"):
        load_settings({"LOA_ZZZ": "1"})


def test_script_variables_and_foreign_variables_are_ignored() -> None:
    env = dict.fromkeys(NOT_SETTINGS, "x") | {"HOME": "/root", "KAFKA_HEAP_OPTS": "-Xmx1g"}
    env.pop("LOA_CONFIG")
    assert load_settings(env) == Settings()


def test_every_loa_variable_the_repository_uses_is_a_setting_or_listed() -> None:
    known = {f"LOA_{f.name.upper()}" for f in fields(Settings)} | NOT_SETTINGS
    sources = [ROOT / "Makefile", ROOT / "Dockerfile", ROOT / ".ci" / "run"]
    for folder in ("deploy", "tests", "benchmarks", "streams"):
        sources += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".sh", ".py", ".yml"}]
    used: dict[str, Path] = {}
    for path in sources:
        if path.is_file() and path.name != "test_config.py":
            for name in re.findall(r"\bLOA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
                used.setdefault(name, path)
    unlisted = {name: str(path) for name, path in used.items() if name not in known}
    assert unlisted == {}


def test_numbers_that_do_not_parse_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="LOA_PARTITIONS='eight': not an integer"):
        load_settings({"LOA_PARTITIONS": "eight"})
    with pytest.raises(SettingsError, match="LOA_CAP_WINDOW_S='1d': not a number"):
        load_settings({"LOA_CAP_WINDOW_S": "1d"})


def test_kafka_bootstrap_servers_is_the_fallback_for_bootstrap() -> None:
    assert load_settings({"KAFKA_BOOTSTRAP_SERVERS": "h:1"}).bootstrap_servers == "h:1"
    env = {"KAFKA_BOOTSTRAP_SERVERS": "h:1", "LOA_BOOTSTRAP_SERVERS": "h:2"}
    assert load_settings(env).bootstrap_servers == "h:2"


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "loa.toml"
    config.write_text('partitions = 12\napp_id = "from-file"\nrequire_signatures = true\n')
    settings = load_settings({"LOA_CONFIG": str(config), "LOA_PARTITIONS": "3"})
    assert (settings.partitions, settings.app_id) == (3, "from-file")


def test_config_file_may_use_a_loa_table(tmp_path: Path) -> None:
    config = tmp_path / "loa.toml"
    config.write_text("[loa]\ncap_window_s = 60\n")
    assert load_settings({}, config_file=config).cap_window_s == 60.0


def test_config_file_unknown_key_names_the_closest(tmp_path: Path) -> None:
    config = tmp_path / "loa.toml"
    config.write_text("partition = 3\n")
    hint = r"partition: unknown setting \(did you mean partitions\?\)"
    with pytest.raises(SettingsError, match=hint):
        load_settings({}, config_file=config)


def test_config_file_boolean_given_as_string_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "loa.toml"
    config.write_text('require_signatures = "ture"\n')
    with pytest.raises(SettingsError, match="require_signatures = 'ture': expected bool"):
        load_settings({}, config_file=config)


def test_missing_or_broken_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the config file"):
        load_settings({}, config_file=tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("partitions = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({}, config_file=broken)


def test_describe_redacts_secrets_and_shows_the_rest() -> None:
    lines = describe(Settings(sasl_password="hunter2", app_id="x"))
    assert "LOA_SASL_PASSWORD=***" in lines
    assert "LOA_APP_ID=x" in lines
    assert "LOA_REQUIRE_SIGNATURES=true" in lines
    assert not any("hunter2" in line for line in lines)


def test_loa_config_prints_effective_settings_without_the_password(tmp_path: Path) -> None:
    config = tmp_path / "loa.toml"
    config.write_text('sasl_password = "s3cret"\npartitions = 5\n')
    result = CliRunner().invoke(
        main, ["--config", str(config), "config"], env={"LOA_APP_ID": "cfg"}
    )
    assert result.exit_code == 0, result.output
    assert "LOA_PARTITIONS=5" in result.output
    assert "LOA_APP_ID=cfg" in result.output
    assert "LOA_SASL_PASSWORD=***" in result.output
    assert "s3cret" not in result.output


def test_loa_command_with_a_typo_stops_with_one_clear_line() -> None:
    result = CliRunner().invoke(main, ["config"], env={"LOA_REQUIRE_SIGNATURES": "ture"})
    assert result.exit_code == 2
    assert "LOA_REQUIRE_SIGNATURES='ture': not a boolean" in result.output
    assert "Traceback" not in result.output


def test_loa_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"loa, version {__version__}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOA_SECURITY_PROTOCOL": "SASL_TLS"}, "not one of .* \\(did you mean SASL_SSL\\?\\)"),
        ({"LOA_SECURITY_PROTOCOL": "SASL_SSL"}, "LOA_SASL_USERNAME is required with SASL_SSL"),
        (
            {"LOA_SECURITY_PROTOCOL": "SASL_SSL", "LOA_SASL_USERNAME": "u"},
            "exactly one of LOA_SASL_PASSWORD and LOA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "LOA_SECURITY_PROTOCOL": "SASL_SSL",
                "LOA_SASL_USERNAME": "u",
                "LOA_SASL_PASSWORD": "p",
                "LOA_SASL_MECHANISM": "SCRAM-SHA-1",
            },
            "LOA_SASL_MECHANISM='SCRAM-SHA-1': not one of",
        ),
        ({"LOA_SECURITY_PROTOCOL": "SSL", "LOA_SSL_KEY_LOCATION": "k.pem"}, "go together"),
        ({"LOA_SSL_CA_LOCATION": "ca.pem"}, "PLAINTEXT has no TLS"),
        ({"LOA_SSL_CHECK_HOSTNAME": "off"}, "LOA_SSL_CHECK_HOSTNAME='off': not a boolean"),
    ],
)
def test_incomplete_or_unknown_security_settings_stop_with_a_clear_error(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_hostname_verification_is_on_by_default() -> None:
    assert load_settings({"LOA_SECURITY_PROTOCOL": "SSL"}).ssl_check_hostname is True


def test_the_settings_reference_is_generated_from_the_settings_object() -> None:
    from streams.settings.load import settings_reference

    reference = settings_reference()
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == reference, (
        "docs/settings.md is stale: python -m streams.settings.load > docs/settings.md"
    )
    for name in (f.name for f in fields(Settings)):
        assert f"`LOA_{name.upper()}`" in reference
