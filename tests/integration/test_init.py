"""``loa init`` and the commands that must not create anything, against the real broker.

Issue 20: read-only commands created every topic with the caller's LOA_PARTITIONS; a worker on a
cluster without topics exited 1 with one hint per topic; nothing bootstrapped a cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.cli.kit import ExitCode
from streams.kafkaio.clients import check_topics, topic_specs
from streams.settings.model import Settings
from tests.integration.conftest import run_loa

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "deploy" / "samples" / "typhoon.json")
AGENCIES = str(ROOT / "deploy" / "agencies")


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("error:", "Error:"))]


@pytest.mark.parametrize(
    "args",
    [
        ("channels", "list"),
        ("agencies", "list"),
        ("status", "nchmf.gov.vn/X"),
        ("watch", "nchmf.gov.vn/X", "--timeout", "5"),
        ("preview", SAMPLE),
    ],
)
async def test_read_only_commands_name_missing_topics_and_create_none(
    make_settings: Callable[..., Settings], args: tuple[str, ...]
) -> None:
    settings = make_settings()
    code, out, err = await run_loa(settings, *args)
    assert code == ExitCode.TOPIC_MISSING, (out, err)
    [line] = _error_lines(err)
    assert settings.orders_topic in line and settings.agencies_topic in line
    assert "loa init" in line
    assert {s.status for s in await check_topics(settings)} == {"missing"}


async def test_a_delivery_worker_on_a_cluster_without_topics_names_them_and_creates_none(
    make_settings: Callable[..., Settings],
) -> None:
    """Only ``loa init`` creates topics: ``loa deliver`` checks them like ``loa worker``."""
    settings = make_settings()
    code, out, err = await run_loa(settings, "deliver", "--idle-exit", "1")
    assert code == ExitCode.TOPIC_MISSING, (out, err)
    [line] = _error_lines(err)
    assert settings.sends_topic("extreme") in line and "loa init" in line
    assert {s.status for s in await check_topics(settings)} == {"missing"}


async def test_init_creates_the_layout_then_a_second_run_changes_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    limits = tmp_path / "limits.toml"
    limits.write_text("[channels]\nsms = 250\npush = -1\n")
    args = ("init", "--agencies", AGENCIES, "--channel-limits", str(limits))
    code, out, err = await run_loa(settings, *args)
    assert code == 0, (out, err)
    specs = topic_specs(settings)
    assert f"topics: {len(specs)} created, 0 checked" in out
    assert "nchmf.gov.vn: loaded" in out
    assert "sms: set to 250 tasks/s" in out
    assert "acls: not managed (no LOA_ACL_* principal set" in out

    code, out, err = await run_loa(settings, *args)
    assert code == 0, (out, err)
    assert f"topics: 0 created, {len(specs)} checked" in out
    assert "created" not in out.split("\n", 1)[1]
    assert "loaded" not in out and "set to" not in out
    assert "nchmf.gov.vn: unchanged" in out and "sms: unchanged (250 tasks/s)" in out
    assert {s.status for s in await check_topics(settings)} == {"present"}

    code, out, err = await run_loa(settings, "channels", "list")
    assert code == 0, err
    assert "sms      250 tasks/s" in out


async def test_init_on_a_broker_without_authorizer_says_so_in_one_line_and_exits_0(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("LOA_ACL_WORKER_PRINCIPAL", "User:worker")
    monkeypatch.setenv("LOA_ACL_AGENCY_PRINCIPALS", "User:agency=nchmf.gov.vn")
    monkeypatch.setenv("LOA_ACL_OPERATOR_PRINCIPAL", "User:operator")
    for _ in range(2):  # and again: nothing to create either time
        code, out, err = await run_loa(settings, "init", "--agencies", AGENCIES)
        assert code == 0, (out, err)
        acl_lines = [line for line in out.splitlines() if "acl" in line.lower()]
        assert acl_lines == [
            "acls: the broker has no authorizer (no ACL is enforced; none created)"
        ]
        assert "nchmf.gov.vn: " in out  # the agencies were still done
    assert {s.status for s in await check_topics(settings)} == {"present"}


async def test_init_and_worker_refuse_topics_with_other_partitions_exit_6_once(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=4)
    code, out, err = await run_loa(settings, "init", "--no-agencies")
    assert code == 0, (out, err)
    wider = dataclasses.replace(settings, partitions=6)
    code, out, err = await run_loa(wider, "init", "--no-agencies")
    assert code == ExitCode.TOPIC_MISSING, (out, err)
    assert f"{settings.orders_topic}: mis-sized (4 partitions, settings want 6)" in out
    [line] = _error_lines(err)
    assert "LOA_PARTITIONS" in line

    code, out, err = await run_loa(wider, "worker")
    assert code == ExitCode.TOPIC_MISSING, (out, err)
    [line] = _error_lines(err)
    assert line.startswith("error: the worker does not start:")
    assert f"{settings.orders_topic} (4 partitions, settings want 6)" in line


async def test_worker_on_a_cluster_without_topics_names_them_once_and_exits_6(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    code, out, err = await run_loa(settings, "worker")
    assert code == ExitCode.TOPIC_MISSING, (out, err)
    [line] = _error_lines(err)
    assert f"{len(topic_specs(settings))} topic(s) missing" in line
    assert line.count("loa init") == 1
    assert {s.status for s in await check_topics(settings)} == {"missing"}


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
async def test_a_tls_or_sasl_client_at_a_plaintext_listener_is_named_as_such(
    make_settings: Callable[..., Settings], protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("LOA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("LOA_SASL_USERNAME", "worker")
    monkeypatch.setenv("LOA_SASL_PASSWORD", "secret")
    code, out, err = await run_loa(settings, "channels", "list")
    assert code == ExitCode.CONFIG, (out, err)
    [line] = _error_lines(err)
    assert line.startswith(
        f"error: the broker at {settings.bootstrap_servers} speaks PLAINTEXT; "
        f"LOA_SECURITY_PROTOCOL is {protocol}"
    )
