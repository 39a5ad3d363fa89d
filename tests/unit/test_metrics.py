"""Metrics on a fresh registry: names, bounded labels, zero-valued series, vectorized counts."""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.logs import JsonFormatter, worker_logging_config
from streams.metrics import SUPPRESSION_REASONS, Metrics, serve, shutdown
from streams.records import CHANNELS, Priority, Progress


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_suppression_reason_is_exported_at_zero() -> None:
    samples = _samples(Metrics(CollectorRegistry()))
    for reason in ("duplicate", "cap", "opted_out", "expired", "cancelled"):
        for priority in Priority:
            key = (
                "loa_tasks_suppressed_total",
                (("priority", priority.value), ("reason", reason)),
            )
            assert samples[key] == 0.0


def test_names_follow_prometheus_conventions_and_labels_are_bounded() -> None:
    metrics = Metrics(CollectorRegistry())
    allowed = {"outcome", "reason", "priority", "status", "channel", "topic", "partition", "le"}
    standard = ("process_", "python_")  # prometheus_client's process/platform/GC collectors
    for family in metrics.registry.collect():
        if family.name.startswith(standard) or family.name == "loa_build":
            continue
        assert family.name.startswith("loa_")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        for sample in family.samples:
            assert set(sample.labels) <= allowed, (family.name, sample.labels)


def test_emitted_counts_a_chunk_per_channel_with_one_bincount() -> None:
    metrics = Metrics(CollectorRegistry())
    channels = np.array([0, 0, 1, 2, 2, 2], dtype=np.uint8)
    metrics.emitted("extreme", channels)
    metrics.emitted("extreme", channels[:2])
    samples = _samples(metrics)
    got = {
        c: samples[("loa_tasks_emitted_total", (("channel", c), ("priority", "extreme")))]
        for c in CHANNELS
    }
    assert got == {"oa": 4.0, "push": 1.0, "sms": 3.0}


def test_suppressed_rejects_an_unknown_reason() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.suppressed("cap", 7, "routine")
    with pytest.raises(ValueError):
        metrics.suppressed("recipient-42", 1)
    key = ("loa_tasks_suppressed_total", (("priority", "routine"), ("reason", "cap")))
    assert _samples(metrics)[key] == 7.0
    assert set(SUPPRESSION_REASONS) == {"duplicate", "cap", "opted_out", "expired", "cancelled"}


def test_directory_gauges_follow_the_owned_partitions() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.directory_sizes({0: (10, 1), 1: (20, 0)})
    metrics.directory_sizes({1: (25, 0)})
    samples = _samples(metrics)
    assert samples[("loa_directory_subscribers", (("partition", "1"),))] == 25.0
    assert ("loa_directory_subscribers", (("partition", "0"),)) not in samples


def test_order_finished_observes_duration_and_time_to_first_task() -> None:
    metrics = Metrics(CollectorRegistry())
    done = Progress("a/1", 1, 0, "severe", 10, 10, True, 100.0, 100.5, 102.0)
    metrics.order_finished(done, written_at=99.0)
    samples = _samples(metrics)
    assert samples[("loa_fanout_duration_seconds_sum", (("priority", "severe"),))] == 2.0
    key = ("loa_fanout_time_to_first_task_seconds_sum", (("priority", "severe"),))
    assert samples[key] == 1.5
    stopped = Progress("a/1", 1, 0, "severe", 10, 4, True, 100.0, 100.5, 101.0, "expired")
    metrics.order_finished(stopped)  # no write time: from the order's start
    samples = _samples(metrics)
    assert samples[key] == 2.0
    reason = ("loa_tasks_suppressed_total", (("priority", "severe"), ("reason", "expired")))
    assert samples[reason] == 6.0


def test_exposition_has_build_info_and_process_metrics_and_no_created_series() -> None:
    samples = _samples(Metrics(CollectorRegistry()))
    names = {name for name, _ in samples}
    assert not [n for n in names if n.endswith("_created")]
    build = [labels for name, labels in samples if name == "loa_build_info"]
    assert len(build) == 1 and dict(build[0])["version"]
    assert {"process_start_time_seconds", "python_info"} <= names
    assert "process_resident_memory_bytes" in names


def test_order_finished_observes_decision_to_first_and_last_task() -> None:
    metrics = Metrics(CollectorRegistry())
    done = Progress("a/1", 1, 0, "extreme", 10, 10, True, 100.0, 100.5, 130.0)
    metrics.first_task("extreme", 99.0, 100.5)
    metrics.order_finished(done, written_at=99.0)
    samples = _samples(metrics)
    prio = (("priority", "extreme"),)
    assert samples[("loa_decision_to_first_task_seconds_sum", prio)] == 1.5
    assert samples[("loa_decision_to_last_task_seconds_sum", prio)] == 31.0
    metrics.first_task("extreme", None, 100.5)  # an order without a decision time
    assert _samples(metrics)[("loa_decision_to_first_task_seconds_count", prio)] == 1.0
    metrics.order_finished(done)  # no decision time (an order from an older ingest): not counted
    assert _samples(metrics)[("loa_decision_to_last_task_seconds_count", prio)] == 1.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_ready_answers_503_with_the_report_until_every_owned_partition_serves() -> None:
    from streams.health import Readiness
    from streams.httpserver import start_server

    readiness = Readiness()
    server = start_server("127.0.0.1", 0, CollectorRegistry(), readiness)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert _get(f"{base}/live") == (200, b'{"live":true}')
        code, body = _get(f"{base}/ready")
        assert (code, orjson.loads(body)["ready"]) == (503, False)  # not started yet
        readiness.started()
        readiness.restoring("directory", 3)
        code, body = _get(f"{base}/ready")
        assert code == 503
        assert orjson.loads(body)["pending"] == {"directory/3": "restoring"}
        readiness.serving("directory", 3)
        code, body = _get(f"{base}/ready")
        assert (code, orjson.loads(body)) == (200, {"ready": True, "pending": {}, "errors": {}})
        code, _ = _get(f"{base}/metrics")
        assert code == 200
    finally:
        shutdown(server)


def test_metrics_are_served_over_http_on_the_configured_host_and_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = Metrics(CollectorRegistry())
    metrics.inbound("rejected", "schema")
    server = serve(metrics, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert 'loa_inbound_records_total{outcome="rejected",reason="schema"} 1.0' in body
        # a second server on the same port is logged, not fatal
        assert serve(Metrics(CollectorRegistry()), "127.0.0.1", port) is None
    finally:
        shutdown(server)
    assert serve(metrics, "127.0.0.1", 0) is None


def test_json_log_format_puts_decision_fields_on_the_line() -> None:
    record = logging.LogRecord(
        "loa",
        logging.INFO,
        __file__,
        1,
        "decision=rejected code=%s sender=%s message=%s",
        ("schema", "a.vn", "bad value x=1"),
        None,
    )
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["decision"] == "rejected"
    assert doc["code"] == "schema"
    assert doc["sender"] == "a.vn"
    assert "x" not in doc and "message" not in doc  # free text after message= is not parsed
    assert doc["msg"].endswith("message=bad value x=1")
    assert worker_logging_config("INFO", "text")["formatters"]["default"]["()"].endswith(
        "DefaultFormatter"
    )
    assert worker_logging_config("INFO", "json") is not None
    accepted = logging.LogRecord(
        "loa",
        logging.INFO,
        __file__,
        1,
        "decision=accepted message=m1 alert=a/1 priority=extreme",
        (),
        None,
    )
    doc = orjson.loads(JsonFormatter().format(accepted))
    assert (doc["message"], doc["alert"], doc["priority"]) == ("m1", "a/1", "extreme")
