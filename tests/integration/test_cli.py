"""``loa`` for people and scripts, on the real broker: one-line errors with documented exit
codes, ``--json``, message ids resolved through their lineage, channel limits."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import orjson
import pytest

from streams.cli.kit import ExitCode
from streams.fanout.limits import read_limits
from streams.settings.model import Settings
from tests.integration.conftest import LiveLoa, alert, run_loa

pytestmark = pytest.mark.integration

SENDER = "test.agency.vn"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "deploy" / "samples" / "typhoon.json")


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(err: str, *, logs: bool = False) -> str:
    """The error line; with ``logs`` (a command that configures logging, like ``deliver``),
    log records may come first but the error is still one line, last."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 or (logs and lines), err
    assert "Traceback" not in err and "Unclosed" not in err and "Usage:" not in err
    return lines[-1]


@pytest.mark.parametrize(
    "args",
    [
        ("topics", "create"),
        ("publish", SAMPLE),
        ("agencies", "list"),
        ("status", "nchmf.gov.vn/X"),
        ("watch", "nchmf.gov.vn/X", "--timeout", "5"),
        ("preview", SAMPLE),
        ("deliver", "--max-tasks", "1"),
        ("directory", "load", "--synthetic", "10"),
        ("channels", "list"),
    ],
)
async def test_unreachable_broker_is_one_line_and_exit_4_for_every_command(
    args: tuple[str, ...],
) -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}", topic_prefix="nowhere")
    code, _out, err = await run_loa(settings, *args)
    assert code == ExitCode.UNREACHABLE, err
    line = _one_line(err, logs=args[0] == "deliver")
    assert line.startswith(f"error: no Kafka broker answered at {settings.bootstrap_servers}")
    assert "loa kafka start" in line


async def test_debug_shows_the_traceback_of_an_unreachable_broker() -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    code, _, err = await run_loa(settings, "--debug", "agencies", "list")
    assert code != 0
    assert "Traceback" in err and "KafkaConnectionError" in err


async def test_json_error_document_carries_the_exit_code() -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    code, out, _ = await run_loa(settings, "agencies", "list", "--json")
    doc = orjson.loads(out)
    assert doc["error"]["kind"] == "BrokerUnreachable"
    assert doc["error"]["exit_code"] == code == ExitCode.UNREACHABLE


async def test_bad_key_file_is_a_bad_input_line_not_a_usage_banner(tmp_path: Path) -> None:
    key = tmp_path / "broken.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    settings = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    code, _, err = await run_loa(settings, "publish", SAMPLE, "--key", str(key))
    assert code == ExitCode.BAD_INPUT, err
    assert _one_line(err).startswith(f"error: {key}: not a usable private key")


async def test_status_on_a_cluster_without_topics_says_run_init(
    kafka_bootstrap: str,
) -> None:
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"none-{uuid.uuid4().hex}")
    code, _, err = await run_loa(settings, "status", "nchmf.gov.vn/X")
    assert code == ExitCode.TOPIC_MISSING, err
    assert "loa init" in _one_line(err)


async def test_usage_error_and_unknown_alert_exit_differently(live: LiveLoa) -> None:
    code, _, err = await run_loa(live.settings, "status")
    assert code == ExitCode.USAGE, err
    code, _, err = await run_loa(live.settings, "status", f"{SENDER}/NOPE-{uuid.uuid4().hex}")
    assert code == ExitCode.NOT_FOUND, err
    assert "no alert or message with this id" in _one_line(err)


async def test_watch_of_a_rejected_alert_says_rejected_at_once(live: LiveLoa) -> None:
    identifier = f"R-{uuid.uuid4().hex[:8]}"
    offset = await live.publish(orjson.dumps(alert(identifier, ["VN-98"])))
    outcome, _ = await live.decision(SENDER, identifier, offset=offset)
    assert outcome == "rejected"
    # the timeout is far beyond the test's own: only an immediate answer passes
    code, out, err = await run_loa(live.settings, "watch", f"{SENDER}/{identifier}")
    assert code == ExitCode.FAILED, err
    assert "rejected (code=unknown_region)" in out
    code, out, _ = await run_loa(live.settings, "status", f"{SENDER}/{identifier}", "--json")
    assert code == ExitCode.FAILED
    assert orjson.loads(out)["outcome"] == "rejected"


async def test_status_of_an_updates_own_message_id_shows_that_version(live: LiveLoa) -> None:
    original = f"S-{uuid.uuid4().hex[:8]}"
    await live.publish(orjson.dumps(alert(original, ["VN-42"])))
    outcome, first = await live.decision(SENDER, original)
    assert outcome == "accepted"
    update = alert(f"{original}-u1", ["VN-42", "VN-40"], headline="Cập nhật")
    update["msgType"] = "Update"
    update["references"] = f"{SENDER},{original},2026-11-23T08:00:00+07:00"
    await live.publish(orjson.dumps(update))
    outcome, _second = await live.decision(SENDER, f"{original}-u1")
    assert outcome == "accepted"
    await live.fanned_out(first["alert_id"], version=2)

    code, out, err = await run_loa(live.settings, "status", f"{SENDER}/{original}-u1", "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["message"] == {
        "outcome": "accepted",
        "message_id": f"{SENDER}/{original}-u1",
        "alert_id": first["alert_id"],
        "version": 2,
        "code": None,
        "message": None,
    }
    assert (doc["status"]["alert_id"], doc["status"]["version"]) == (first["alert_id"], 2)
    assert doc["status"]["targeted"] == len(live.expected(["VN-42", "VN-40"]))
    code, out, err = await run_loa(live.settings, "watch", f"{SENDER}/{original}-u1")
    assert code == 0, err
    assert out.startswith(f"{first['alert_id']} v2: targeted")


async def test_channels_set_list_and_lift_change_the_cluster_limits(live: LiveLoa) -> None:
    code, _, err = await run_loa(live.settings, "channels", "set", "sms", "250")
    assert code == 0, err
    assert (await read_limits(live.settings))["sms"] == 250.0
    code, out, err = await run_loa(live.settings, "channels", "list", "--json")
    assert code == 0, err
    assert orjson.loads(out)["channels"] == {"oa": None, "push": None, "sms": 250.0}
    code, _, err = await run_loa(live.settings, "channels", "lift", "sms")
    assert code == 0, err
    assert (await read_limits(live.settings))["sms"] is None
    for bad in (("set", "fax", "1"), ("set", "sms", "-1"), ("set", "sms", "nan")):
        code, _, err = await run_loa(live.settings, "channels", *bad)
        assert code == ExitCode.USAGE, (bad, err)


async def test_agencies_list_and_preview_print_json(live: LiveLoa, tmp_path: Path) -> None:
    code, out, err = await run_loa(live.settings, "agencies", "list", "--json")
    assert code == 0, err
    ids = [a["id"] for a in orjson.loads(out)["agencies"]]
    assert {SENDER, "nchmf.gov.vn", "ubnd.quangninh.gov.vn"} <= set(ids)
    path = tmp_path / "draft.json"
    path.write_bytes(orjson.dumps(alert("PJ-1", ["VN-22"])))
    code, out, err = await run_loa(live.settings, "preview", str(path), "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert (doc["outcome"], doc["reached"]) == ("accepted", len(live.expected(["VN-22"])))
    path.write_bytes(orjson.dumps(alert("PJ-2", ["VN-98"])))
    code, out, _ = await run_loa(live.settings, "preview", str(path), "--json")
    assert code == ExitCode.FAILED
    assert orjson.loads(out)["code"] == "unknown_region"
