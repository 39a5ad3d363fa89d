"""The delivery benchmark, bounded (issue 19's Done-when: it runs in CI): a few thousand tasks,
a provider answering after 5 ms with 1 % errors and down for 3 s in the outage run. Asserts
that every figure is produced and every count is exact, never a rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import delivery

pytestmark = pytest.mark.integration

TASKS = 3_000


@pytest.mark.slow
def test_delivery_bench_delivers_every_task_once_and_reports_its_figures(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    argv = [
        f"--tasks={TASKS}",
        "--in-flight=100",
        "--delay-ms=5",
        "--errors=0.01",
        "--down-s=3",
        "--partitions=4",
        "--timeout-s=240",
        f"--out={tmp_path}",
    ]
    args = delivery.parser().parse_args(argv)
    args.argv = argv
    report = delivery.main(args)
    assert delivery.problems(report) == []
    # http once per batch size (bulk calls of 100, then a call per task); the others once
    assert [(r["run"], r["batch"]) for r in report["runs"]] == [
        ("noop", 100),
        ("http", 100),
        ("http", 1),
        ("outage", 100),
    ]
    written = json.loads((tmp_path / "delivery.json").read_text())
    for run in written["runs"]:
        assert run["exact"], run
        assert run["receipts"]["delivered"] == run["receipts"]["distinct_delivered"] == TASKS
        assert run["receipts"]["failed"] == run["receipts"]["duplicate_final"] == 0
        assert run["receipts"]["per_s"] > 0 and run["vs_noop"] > 0
        if run["run"] != "noop":
            assert run["provider"]["distinct_delivered"] == TASKS
            assert run["provider"]["errors"] > 0  # the 1 % of 503s were retried
            assert run["receipts"]["retrying"] >= run["provider"]["errors"]
            # the bulk runs carried several tasks per request, the others one
            if run["batch"] == 1:
                assert run["provider"]["requests"] >= run["provider"]["calls"]
            else:
                assert run["provider"]["requests"] < run["provider"]["calls"]
    outage = written["runs"][-1]
    assert outage["outage"]["down_s"] == 3 and outage["outage"]["recovered_s"] >= 0
    assert "receipts/s" in delivery.table(written)
