"""The CLI's error classification: by exception class, one line, a documented exit code."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors

from streams.cli.kit import ExitCode, classify
from streams.errors import BadInputFile, NotFound, TopicMissing
from streams.fanout.limits import limit_value


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (kafka_errors.KafkaConnectionError("Unable to bootstrap"), ExitCode.UNREACHABLE),
        (kafka_errors.KafkaTimeoutError(), ExitCode.UNREACHABLE),
        (kafka_errors.TopicAuthorizationFailedError(), ExitCode.NOT_AUTHORIZED),
        (kafka_errors.GroupAuthorizationFailedError(), ExitCode.NOT_AUTHORIZED),
        (kafka_errors.UnknownTopicOrPartitionError(), ExitCode.TOPIC_MISSING),
        (TopicMissing("topic x does not exist"), ExitCode.TOPIC_MISSING),
        (NotFound("no such alert"), ExitCode.NOT_FOUND),
        (BadInputFile("k.key: not a key"), ExitCode.BAD_INPUT),
        (PermissionError(errno.EACCES, "Permission denied", "a.json"), ExitCode.BAD_INPUT),
        (KeyError("boom"), ExitCode.INTERNAL),
    ],
)
def test_each_expected_failure_maps_to_its_exit_code(exc: BaseException, code: ExitCode) -> None:
    failure = classify(exc, bootstrap="127.0.0.1:1")
    assert failure.code == code
    assert "\n" not in failure.line()
    assert failure.as_json()["error"]["exit_code"] == int(code)


def test_unreachable_broker_line_names_the_address_and_what_to_do() -> None:
    line = classify(kafka_errors.KafkaConnectionError(), bootstrap="10.0.0.1:9092").line()
    assert "10.0.0.1:9092" in line and "loa kafka start" in line


def test_a_bug_says_to_rerun_with_debug() -> None:
    assert "--debug" in classify(ZeroDivisionError("x")).line()


@pytest.mark.parametrize("rate", [-1.0, float("nan"), float("inf")])
def test_channel_limit_refuses_rates_the_throttle_cannot_use(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        limit_value(rate)


def test_channel_limit_record_is_the_json_the_workers_read() -> None:
    from streams.fanout.limits import decode_limit

    assert decode_limit(b"sms", limit_value(12.5)) == 12.5
    assert decode_limit(b"sms", limit_value(0)) == 0.0


def test_loa_bench_runs_from_a_checkout_whatever_the_current_directory(tmp_path: Path) -> None:
    """`make bench` runs the console script `loa bench`, whose sys.path has the venv's bin,
    not the checkout: the editable install's checkout still provides benchmarks/."""
    import shutil
    import subprocess
    import sys

    loa = Path(sys.executable).parent / "loa"
    command = [str(loa)] if loa.exists() else [shutil.which("loa") or "loa"]
    done = subprocess.run(
        [*command, "bench", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--total" in done.stdout
