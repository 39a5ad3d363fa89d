"""Logs an on-call engineer can read (issue 20): repeats counted, library chatter off, no false
ERROR at start, in the worker's logging config as in the CLI's."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest

from streams.logs import KnownNoise, RepeatLimiter, worker_logging_config


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_error_is_written_once_per_window_with_its_count() -> None:
    clock = _Clock()
    limiter = RepeatLimiter(window_s=60.0, clock=clock)
    template = "Unable connect to node with id %s: %s"
    passed = [limiter.filter(_record(template, 1, f"refused {i}")) for i in range(2311)]
    assert passed.count(True) == 1  # the first one
    clock.now += 60.0
    record = _record(template, 1, "refused again")
    assert limiter.filter(record)
    assert record.getMessage() == (
        "Unable connect to node with id 1: refused again (2,311 times in the last 60 s)"
    )
    clock.now += 61.0
    quiet = _record(template, 1, "once")
    assert limiter.filter(quiet) and quiet.getMessage().endswith("once")  # nothing was held


def test_info_lines_and_different_errors_are_never_held() -> None:
    limiter = RepeatLimiter(window_s=60.0, clock=_Clock())
    decisions = [
        limiter.filter(_record("decision=accepted alert=%s", i, level=logging.INFO))
        for i in range(100)
    ]
    assert all(decisions)
    assert limiter.filter(_record("one thing %s", 1))
    assert limiter.filter(_record("another thing %s", 1))


def test_the_leader_topic_lookup_at_start_is_not_an_error() -> None:
    noise = KnownNoise()
    assert not noise.filter(
        _record("Topic %s not found in cluster metadata", "loa-__assignor-__leader")
    )
    assert not noise.filter(
        _record("Ignoring missing topic: %r", "loa-__assignor-__leader", level=logging.WARNING)
    )
    assert noise.filter(_record("Topic %s not found in cluster metadata", "loa.fanout.orders"))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_worker_logging_holds_repeats_and_quiets_library_info(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    root, saved = logging.getLogger(), logging.getLogger().handlers[:]
    try:
        logging.config.dictConfig(worker_logging_config("INFO", fmt))
        conn = logging.getLogger("aiokafka.conn")
        for _ in range(500):
            conn.error("Unable connect to node with id %s: %s", 1, "[Errno 111] refused")
        logging.getLogger("aiokafka.consumer.group_coordinator").info("Discovered coordinator 1")
        logging.getLogger("httpx").info("HTTP Request: POST https://sms.example/send")
        logging.getLogger("aiokafka.cluster").error(
            "Topic %s not found in cluster metadata", "loa-__assignor-__leader"
        )
        logging.getLogger("loa").info("decision=accepted alert=a/1")
    finally:
        root.handlers = saved
        for name in ("aiokafka", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "Unable connect" in lines[0] and "decision=accepted" in lines[1]
