"""``loa bench --quick`` on the real broker: every section produces its figures, every count
read back by the independent consumer is exact, plots and the results JSON are written, and
the bench topics are gone afterwards. Figures are not judged here (speed is for ``make bench``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

# over a minute of two cores (every section, every peer): in `make slow`, which CI runs after
# `make test`, so `make test` stays under 15 minutes
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_quick_bench_produces_every_figure_with_exact_counts_and_cleans_up(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LOA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "bench", "--quick", "--json", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert json.loads((tmp_path / "bench.json").read_text())["when"] == result["when"]

    fanout = result["fanout"]
    assert {(r["label"], r["workers"]) for r in fanout} == {
        ("loa first", 1),
        ("loa", 1),
        ("loa+throttle", 1),
        ("loa+caps", 1),
        ("loa first", 2),
        ("loa", 2),
    }
    # the first alert on each just-ready worker set, beside the warm one, and what differs
    # from a user's `loa worker`
    assert [(r["workers"], r["ratio"] > 0) for r in result["first_alert"]] == [(1, True), (2, True)]
    assert "LOA_INSTANCE_ID" in result["worker_start"]
    for run in fanout:
        assert run["exact"], run
        assert run["broker"]["duplicates"] == 0
        assert run["per_s"] > 0 and run["loa_own"]["per_s"] > 0
        assert len(run["per_worker"]) == run["workers"]
    assert all(r["broker"]["tasks"] == 20_000 for r in fanout if r["label"] != "loa+caps")

    assert [p["peer"] for p in result["peers"]] == ["java", "confluent", "aiokafka", "faust"]
    for peer in result["peers"]:
        assert peer["exact"] and peer["broker"]["tasks"] == peer["records"], peer

    latency = result["latency"]
    assert (
        latency["small_alerts"]["exact"] and latency["small_alerts"]["first_task_s"]["count"] == 20
    )
    assert latency["extreme_during_national"]["exact"]
    assert latency["extreme_during_national"]["first_task_s"]["count"] == 10

    sustained = result["sustained"]
    assert sustained["exact"] is True and sustained["tasks"] == 60_000 and sustained["samples"]
    # every alert of the run counted on its own, and the run set against one alert just before
    assert len(sustained["per_alert"]) == sustained["alerts"] == 3
    assert all(a["exact"] and a["tasks"] == 20_000 for a in sustained["per_alert"])
    assert sustained["burst_per_s"] > 0 and sustained["ratio_to_burst"] > 0

    assert {r["system"].split(" ")[0] for r in result["summary"]} == {"peer:", "Loa"}
    for name in ("systems", "latency", "sustained", "scaling"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    assert result["machine"]["versions"]["aiokafka"]

    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert not [t for t in topics if t.startswith("loabench-")]
