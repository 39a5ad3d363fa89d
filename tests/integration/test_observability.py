"""Observability on the real broker with a real Prometheus (Debian's ``prometheus`` package).

A worker of its own (metrics on a free port, JSON logs), a Prometheus scraping it every second,
the reference delivery worker writing receipts, and ``loa status`` reading them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.delivery import deliver
from streams.demo.localrun import WorkerProcess
from streams.directory.load import load_synthetic
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.receipts.observe import wait_decision, watch_progress
from streams.receipts.status import StatusReader
from streams.records import CHANNELS
from streams.regions import registry
from streams.schemas import validator
from streams.settings.model import Settings
from tests.integration.conftest import alert, register_agencies, run_loa

pytestmark = pytest.mark.integration

SUBSCRIBERS = 8_000
SEED = 5
ROOT = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


@dataclass
class Observed:
    settings: Settings
    worker: WorkerProcess
    metrics_url: str
    log_path: Path

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = _get(self.metrics_url).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def total(self, name: str, **labels: str) -> float:
        return sum(
            v
            for (n, ls), v in self.scrape().items()
            if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
        )

    async def fan_out(self, regions: list[str]) -> str:
        identifier = f"O-{uuid.uuid4().hex[:8]}"
        producer = make_producer(self.settings)
        await producer.start()
        try:
            await producer.send_and_wait(
                self.settings.inbound_topic, orjson.dumps(alert(identifier, regions))
            )
        finally:
            await producer.stop()
        outcome, record = await wait_decision(
            self.settings, "test.agency.vn", identifier, timeout_s=60
        )
        assert outcome == "accepted", record
        await watch_progress(self.settings, record["alert_id"], timeout_s=120)
        return str(record["alert_id"])

    async def tasks_on_topic(self, priority: str = "extreme") -> list[dict[str, Any]]:
        topic = self.settings.sends_topic(priority)
        return [orjson.loads(r.value) async for r in read_to_end(self.settings, topic)]


@pytest.fixture(scope="module")
async def observed(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Observed]:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"obs-{tag}",
        app_id=f"obs-{tag}",
        partitions=2,
        data_dir=str(tmp_path_factory.mktemp(f"data-{tag}")),
    )
    await create_topics(settings)
    await register_agencies(settings, Path(tmp_path_factory.mktemp("keys")))
    await load_synthetic(settings, SUBSCRIBERS, SEED, registry())
    port = _free_port()
    log_path = Path(tmp_path_factory.mktemp("logs")) / "worker.log"
    worker = WorkerProcess(
        settings,
        log_path,
        LOA_METRICS_PORT=str(port),
        LOA_METRICS_HOST="127.0.0.1",
        LOA_METRICS_INTERVAL_S="1",
        LOA_LOG_FORMAT="json",
        LOA_REQUIRE_SIGNATURES="false",
    ).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(300):  # the endpoint is up once the runtime has started (bounded)
            assert worker.alive, log_path.read_text(errors="replace")[-3000:]
            try:
                _get(url)
                break
            except OSError:
                await asyncio.sleep(0.2)
        else:
            pytest.fail("worker metrics endpoint never came up")
        yield Observed(settings, worker, url, log_path)
    finally:
        worker.stop()
        assert worker.proc is not None and worker.proc.returncode is not None


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        doc = json.loads(_get(f"{self.url}/api/v1/query?{q}"))
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(observed: Observed, tmp_path: Path) -> Iterator[Prometheus]:
    """Debian's prometheus on a free loopback port, scraping the worker every second."""
    target = observed.metrics_url.removeprefix("http://").removesuffix("/metrics")
    with run_prometheus([target], tmp_path) as prom:
        yield prom


@contextlib.contextmanager
def run_prometheus(targets: list[str], tmp_path: Path) -> Iterator[Prometheus]:
    """Debian's prometheus on a free loopback port, scraping ``targets`` every second."""
    binary = shutil.which("prometheus")
    if binary is None:  # fail loudly: `make setup` runs deploy/prometheus/install.sh
        pytest.fail("prometheus not installed: run deploy/prometheus/install.sh", pytrace=False)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "deploy" / "prometheus" / "rules" / "loa.rules.yml")],
                "scrape_configs": [{"job_name": "loa", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        for _ in range(150):
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                if _get(f"{prom.url}/-/ready"):
                    break
            except OSError:
                pass
            subprocess.run(["sleep", "0.2"], check=True)
        else:
            pytest.fail("prometheus did not become ready in 30 s")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode is not None


async def _until(
    check: Any, *, timeout_s: float = 60.0, every_s: float = 0.5, last: Any = None
) -> Any:
    """Poll ``check()`` until it returns something truthy (bounded); ``last()`` explains."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        got = check()
        if got:
            return got
        await asyncio.sleep(every_s)
    raise AssertionError(f"not met in {timeout_s} s: {last() if last else got!r}")


async def test_prometheus_reads_the_emitted_task_count_of_a_live_fanout(
    observed: Observed, prometheus: Prometheus
) -> None:
    await observed.fan_out(["VN-01", "VN-79", "VN-48"])
    await observed.fan_out(["VN"])
    tasks = await observed.tasks_on_topic("extreme")
    assert tasks
    by_channel: dict[str, int] = {}
    for task in tasks:
        by_channel[task["channel"]] = by_channel.get(task["channel"], 0) + 1

    def emitted() -> float | None:
        value = prometheus.scalar('sum(loa_tasks_emitted_total{job="loa",priority="extreme"})')
        return value if value == len(tasks) else None

    assert await _until(emitted) == len(tasks)
    per_channel = {
        r["metric"]["channel"]: int(float(r["value"][1]))
        for r in prometheus.query('sum by (channel) (loa_tasks_emitted_total{priority="extreme"})')
        if float(r["value"][1]) > 0
    }
    assert per_channel == by_channel
    assert prometheus.scalar('sum(loa_recipients_targeted_total{priority="extreme"})') == len(tasks)
    assert prometheus.scalar('up{job="loa"}') == 1.0
    accepted = prometheus.scalar('sum(loa_inbound_records_total{outcome="accepted"})')
    assert accepted is not None and accepted >= 2
    # the rules loaded into this Prometheus evaluate (none of them firing here)
    firing = prometheus.query('ALERTS{alertstate="firing"}')
    assert firing == []


async def test_worker_exports_lag_directory_size_and_fanout_latency(observed: Observed) -> None:
    await observed.fan_out(["VN-22"])
    s = observed.settings

    def lags() -> dict[str, float]:
        return {
            "subscribers": observed.total("loa_directory_subscribers"),
            "inbound": observed.total("loa_consumer_lag_records", topic=s.inbound_topic),
            "directory": observed.total("loa_consumer_lag_records", topic=s.directory_topic),
            "orders": observed.total("loa_consumer_lag_records", topic=s.orders_topic),
        }

    def caught_up() -> bool:
        now = lags()
        # orders are written transactionally: lag is taken on the last stable offset and past
        # the commit markers, so it returns to 0 at rest
        return (now["subscribers"], now["inbound"], now["directory"], now["orders"]) == (
            SUBSCRIBERS,
            0,
            0,
            0,
        )

    await _until(caught_up, last=lags)
    samples = observed.scrape()
    topics = {dict(ls)["topic"] for (n, ls) in samples if n == "loa_consumer_lag_records"}
    assert topics == {s.inbound_topic, s.orders_topic, s.receipts_topic, s.directory_topic}
    assert observed.total("loa_fanout_duration_seconds_count", priority="extreme") >= s.partitions
    assert observed.total("loa_fanout_time_to_first_task_seconds_count") >= 1
    assert observed.total("loa_decision_to_first_task_seconds_count") >= s.partitions
    assert observed.total("loa_decision_to_last_task_seconds_count") >= s.partitions
    assert observed.total("loa_build_info") == 1
    assert not [n for (n, _) in samples if n.endswith("_created")]
    assert observed.total("loa_fanout_orders_in_progress") == 0
    for reason in ("duplicate", "cap", "opted_out", "expired", "cancelled"):
        assert ("loa_tasks_suppressed_total", (("priority", "routine"), ("reason", reason))) in (
            samples
        )


async def test_receipts_fold_into_status_delivered_and_failed_exactly_once(
    observed: Observed,
) -> None:
    s = observed.settings
    alert_id = await observed.fan_out(["VN-46", "VN-31"])
    tasks = await observed.tasks_on_topic("extreme")
    mine = [t for t in tasks if t["alert_id"] == alert_id]
    # a repeated task (as a non-transactional producer might write) is dropped by its key
    producer = make_producer(s)
    await producer.start()
    try:
        await producer.send_and_wait(
            s.sends_topic("extreme"),
            orjson.dumps(mine[0]),
            key=b"%d" % mine[0]["recipient_id"],
            partition=0,
        )
    finally:
        await producer.stop()
    receipts_before = observed.total("loa_receipts_total")
    stats = await deliver(s, priorities=["extreme"], idle_exit_s=3.0, fail_every=7)
    # a failed task of a recipient with a further channel is followed by a fallback task, which
    # gets its own receipt (the log provider fails every 7th call, fallback tasks included)
    assert stats.fallbacks > 0
    assert stats.receipts == len(tasks) + stats.fallbacks
    assert stats.duplicates == 1
    assert stats.failed == stats.receipts // 7

    async with StatusReader(s, alert_id) as reader:

        async def settled() -> Any:
            await reader.catch_up()
            status = reader.status()
            return status if status.done else None

        status = None
        for _ in range(120):
            status = await settled()
            if status is not None:
                break
            await asyncio.sleep(0.5)
        assert status is not None, reader.status()
    assert status.emitted == status.targeted == len(mine)
    assert status.delivered + status.failed == len(mine)  # failed: no channel left
    assert status.failed > 0 and status.failed_reasons == {"simulated": status.failed}
    assert status.fell_back > 0
    assert set(status.fallbacks) <= {f"{a}>{b} simulated" for a in CHANNELS for b in CHANNELS}

    # every receipt counted once by the receipts agent
    await _until(lambda: observed.total("loa_receipts_total") - receipts_before == stats.receipts)
    assert observed.total("loa_receipts_total", outcome="failed") == stats.failed
    # the delivery group committed its offsets with the receipts: a second run finds nothing
    again = await deliver(s, priorities=["extreme"], idle_exit_s=1.0)
    assert (again.receipts, again.duplicates) == (0, 0)

    receipts = [orjson.loads(r.value) async for r in read_to_end(s, s.receipts_topic)]
    assert len(receipts) == stats.receipts
    check = validator("receipt")
    for doc in receipts[:200]:
        check.validate(doc)

    code, out, _ = await run_loa(s, "status", alert_id)
    assert code == 0
    assert f"{alert_id} v1: done" in out
    assert f"delivered   {status.delivered:>12,}" in out
    code, out, err = await run_loa(s, "status", alert_id, "--watch", "--timeout", "30")
    assert code == 0, err
    assert f"{len(mine):,}/{len(mine):,}" in err  # the progress bar reached the end


async def test_worker_logs_one_json_line_per_alert_decision(observed: Observed) -> None:
    alert_id = await observed.fan_out(["VN-01"])
    bad = alert(f"BAD-{uuid.uuid4().hex[:8]}", ["VN-01"])
    del bad["info"][0]["severity"]
    producer = make_producer(observed.settings)
    await producer.start()
    try:
        await producer.send_and_wait(observed.settings.inbound_topic, orjson.dumps(bad))
    finally:
        await producer.stop()
    await wait_decision(observed.settings, "test.agency.vn", bad["identifier"], timeout_s=60)

    def decisions() -> list[dict[str, Any]]:
        lines = []
        for line in observed.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if "decision" in doc:
                    lines.append(doc)
        return lines

    docs = await _until(
        lambda: (d := decisions()) and any(x["decision"] == "rejected" for x in d) and d
    )
    accepted = [d for d in docs if d["decision"] == "accepted" and d.get("alert") == alert_id]
    assert len(accepted) == 1
    assert accepted[0]["priority"] == "extreme" and accepted[0]["level"] == "INFO"
    rejected = [d for d in docs if d["decision"] == "rejected"]
    assert rejected[-1]["code"] == "schema"
