"""Readiness bookkeeping: ready only when started and every owned partition is serving."""

from __future__ import annotations

from streams.health import PartitionState, Readiness


def test_not_ready_until_started_even_with_no_partitions() -> None:
    r = Readiness()
    assert not r.ready
    r.started()
    assert r.ready


def test_restoring_partition_keeps_worker_unready_until_serving() -> None:
    r = Readiness()
    r.started()
    r.restoring("directory", 3)
    assert not r.ready
    assert r.report().pending == {"directory/3": "restoring"}
    r.serving("directory", 3)
    assert r.ready
    assert r.report().pending == {}


def test_failed_restore_reports_error_until_retry_serves() -> None:
    r = Readiness()
    r.started()
    r.failed("fanout", 1, "KafkaTimeoutError: fetch")
    assert not r.ready
    assert r.state("fanout", 1) is PartitionState.FAILED
    assert r.report().errors == {"fanout/1": "KafkaTimeoutError: fetch"}
    r.serving("fanout", 1)
    assert r.ready and r.report().errors == {}


def test_revoked_partition_no_longer_counts() -> None:
    r = Readiness()
    r.started()
    r.failed("receipts", 0, "boom")
    r.revoked("receipts", 0)
    assert r.ready


def test_stopping_worker_is_not_ready() -> None:
    r = Readiness()
    r.started()
    r.started(False)
    assert not r.ready
