"""Issue 20 defects that need no broker: settings outside the broker's limits, ``loa config``
showing what is in use, files named by path with exit 78, topic states, channel limit files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli.kit import ExitCode, classify
from streams.errors import BadInputFile, ConfigUnusable
from streams.kafkaio.clients import topic_states, topics_error
from streams.kafkaio.security import sasl_password, ssl_context
from streams.runtime.bootstrap import read_channel_limits
from streams.settings.load import check_files, describe, load_settings
from streams.settings.model import Settings, runbook
from streams.topics import TopicShape


@pytest.mark.parametrize("value", ["1", "5.9", "301", "nan"])
def test_session_timeout_outside_the_brokers_limits_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="LOA_SESSION_TIMEOUT_S"):
        load_settings({"LOA_SESSION_TIMEOUT_S": value})


@pytest.mark.parametrize("value", ["6", "10", "300"])
def test_session_timeout_within_the_limits_is_accepted(value: str) -> None:
    assert load_settings({"LOA_SESSION_TIMEOUT_S": value}).session_timeout_s == float(value)


def test_loa_config_shows_the_data_dir_and_instance_id_in_use(tmp_path: Path) -> None:
    settings = load_settings({"LOA_DATA_DIR": str(tmp_path)})
    lines = describe(settings)
    assert f"LOA_DATA_DIR={tmp_path}" in lines
    assert f"LOA_INSTANCE_ID={settings.group_instance_id}" in lines
    assert settings.group_instance_id and settings.group_instance_id != ""
    assert "LOA_INSTANCE_ID=none" in describe(load_settings({"LOA_INSTANCE_ID": "none"}))
    assert not any(line.endswith("=") for line in lines if "DATA_DIR" in line)


def test_runbook_links_come_from_the_setting() -> None:
    settings = load_settings({"LOA_RUNBOOK_URL": "https://wiki.example/loa/runbooks"})
    assert runbook(settings, "LoaWorkerDown") == "https://wiki.example/loa/runbooks#loaworkerdown"
    with pytest.raises(ValueError, match="LOA_RUNBOOK_URL"):
        load_settings({"LOA_RUNBOOK_URL": "loa.example"})


def _sasl(password_file: Path) -> Settings:
    return load_settings(
        {
            "LOA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LOA_SASL_USERNAME": "worker",
            "LOA_SASL_PASSWORD_FILE": str(password_file),
        }
    )


def test_a_missing_password_file_is_named_with_its_path_and_exit_78(tmp_path: Path) -> None:
    missing = tmp_path / "secret" / "password"
    with pytest.raises(ConfigUnusable, match=f"LOA_SASL_PASSWORD_FILE={missing}: cannot read"):
        sasl_password(_sasl(missing))
    failure = classify(ConfigUnusable("x"))
    assert failure.code == ExitCode.CONFIG == 78


def test_an_empty_password_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "password"
    empty.write_text("")
    with pytest.raises(ConfigUnusable, match="the file is empty"):
        sasl_password(_sasl(empty))


def test_an_unreadable_ca_file_is_named_not_a_bare_file_not_found(tmp_path: Path) -> None:
    settings = load_settings(
        {"LOA_SECURITY_PROTOCOL": "SSL", "LOA_SSL_CA_LOCATION": str(tmp_path / "ca.crt")}
    )
    with pytest.raises(ConfigUnusable, match=f"LOA_SSL_CA_LOCATION={tmp_path / 'ca.crt'}"):
        ssl_context(settings)
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nREPLACE-ME\n-----END CERTIFICATE-----\n")
    settings = load_settings({"LOA_SECURITY_PROTOCOL": "SSL", "LOA_SSL_CA_LOCATION": str(bad)})
    with pytest.raises(ConfigUnusable, match="not a PEM CA"):
        ssl_context(settings)


def test_config_check_opens_every_file_it_names(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = load_settings(
        {
            "LOA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LOA_SASL_USERNAME": "worker",
            "LOA_SASL_PASSWORD_FILE": str(password),
            "LOA_DATA_DIR": str(tmp_path / "data"),
            "LOA_GATEWAY_TLS_CERT": str(tmp_path / "gateway.crt"),
        }
    )
    with pytest.raises(ConfigUnusable, match="LOA_GATEWAY_TLS_CERT="):
        check_files(settings)


def test_loa_config_check_exits_78_naming_the_file(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LOA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LOA_SASL_USERNAME": "worker",
        "LOA_SASL_PASSWORD_FILE": str(tmp_path / "nope"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "streams", "config", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 78, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: LOA_SASL_PASSWORD_FILE={tmp_path / 'nope'}: cannot read it (No such file or "
        f"directory; running as uid {__import__('os').getuid()}) (fix the file's path or "
        "permissions (the pod's user must read it), or the port)"
    ]


def test_topic_states_name_created_present_missing_and_mis_sized() -> None:
    wanted = [TopicShape("a", 4, 1), TopicShape("b", 4, 1), TopicShape("c", 1, 1)]
    wanted.append(TopicShape("d", 4, 3))
    existing = {
        "a": TopicShape("a", 4, 1),
        "b": TopicShape("b", 6, 1),
        "d": TopicShape("d", 4, 1),
    }
    states = topic_states(wanted, existing, created=[])
    assert [(s.name, s.status) for s in states] == [
        ("a", "present"),
        ("b", "mis-sized"),
        ("c", "missing"),
        ("d", "mis-sized"),
    ]
    assert states[1].detail == "6 partitions, settings want 4"
    error = topics_error(states)
    assert error is not None
    assert error.message == (
        "1 topic(s) missing: c; 1 topic(s) differ from the settings: b (6 partitions, settings "
        "want 4)"
    )  # a worker runs on another replication factor: only init reports d
    assert "loa init" in error.hint
    only_sized = topics_error([s for s in states if s.name != "c"])
    assert only_sized is not None and "LOA_PARTITIONS" in only_sized.hint
    assert topics_error([states[0]]) is None


def test_channel_limits_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text("[channels]\nsms = 500\npush = -1\noa = 0\n")
    assert read_channel_limits(path) == {"sms": 500.0, "push": None, "oa": 0.0}
    path.write_text("fax = 1\n")
    with pytest.raises(BadInputFile, match="fax: not a channel"):
        read_channel_limits(path)


def test_a_busy_metrics_port_stops_the_worker_at_start_with_exit_78(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOA_METRICS_PORT": str(port)}
        out = subprocess.run(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == ExitCode.CONFIG, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: LOA_METRICS_PORT={port}: cannot serve /metrics")
    assert "another process holds the port" in line


def test_loa_kafka_without_the_repository_script_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    import streams.cli.setup
    from streams.cli.main import main

    monkeypatch.setattr(
        streams.cli.setup, "KAFKA_SCRIPT", tmp_path / "deploy" / "kafka" / "kafka.sh"
    )
    result = CliRunner().invoke(main, ["kafka", "status"])
    assert result.exit_code == ExitCode.USAGE
    assert "this installation has none" in result.output
    assert "Traceback" not in result.output
