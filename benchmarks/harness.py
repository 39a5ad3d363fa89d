"""One benchmark deployment: bench topics (broker append times), a loaded directory, worker
processes, alerts published and their send tasks counted by the broker's clock.

Loa's own figure (its progress records) is kept next to the broker's, never instead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.brokerclock import (
    LOG_APPEND,
    BrokerCount,
    Marks,
    client_config,
    count_tasks,
    create_log_append_topics,
    end_offsets,
    watermarks,
)
from streams.demo.localrun import WorkerProcess, free_port
from streams.directory.load import load_synthetic
from streams.ingest.agency_service import ensure_local_key
from streams.ingest.signatures import signature_headers
from streams.kafkaio.clients import create_topics, make_producer, topic_specs
from streams.receipts.observe import wait_decision, watch_progress
from streams.records import Priority, Progress
from streams.regions import registry
from streams.settings.model import Settings

ALERT_SENDER = "nchmf.gov.vn"
AGENCIES = Path(__file__).resolve().parent.parent / "deploy" / "agencies"
SEED = 1
#: Every topic and consumer group of this run starts with this, so cleaning up after the run
#: touches nothing else on a shared cluster.
RUN_PREFIX = f"loabench-{uuid.uuid4().hex[:6]}"
SEVERITY = {Priority.EXTREME: "Extreme", Priority.SEVERE: "Severe", Priority.ROUTINE: "Moderate"}


def alert_json(identifier: str, regions: tuple[str, ...], priority: Priority) -> bytes:
    urgency = "Expected" if priority is not Priority.EXTREME else "Immediate"
    return orjson.dumps(
        {
            "identifier": identifier,
            "sender": ALERT_SENDER,
            "sent": "2026-11-23T08:00:00+07:00",
            "status": "Actual",
            "msgType": "Alert",
            "scope": "Public",
            "info": [
                {
                    "category": ["Met"],
                    "event": "Bench",
                    "urgency": urgency,
                    "severity": SEVERITY[priority],
                    "certainty": "Observed",
                    "headline": "Benchmark alert",
                    "area": [{"areaDesc": "bench", "regions": list(regions)}],
                }
            ],
        }
    )


def ward_counts(n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Subscribers per ward index of the synthetic directory the bench loads (same draws as
    :func:`streams.directory.synthetic.synthetic_subscribers`), so small alerts have a known
    audience."""
    regions = registry()
    ward = np.random.default_rng(SEED).integers(0, regions.n_wards, size=n, dtype=np.uint16)
    return np.bincount(ward, minlength=regions.n_wards)


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError):
        return 0.0, 0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, rss_pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Published:
    identifier: str
    priority: Priority
    append_ms: int  # the inbound record's LogAppendTime
    expected: int | None

    @property
    def alert_id(self) -> str:
        return f"{ALERT_SENDER}/{self.identifier}"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread kind of a process (thread names with digits dropped, e.g. the
    broker's ``kafka-log-clean``, ``C2 CompilerThre``, ``GC Thread#``; the worker's
    ``asyncio_`` pool), from /proc: where a process spent its time without attaching to it."""
    tick = os.sysconf("SC_CLK_TCK")
    kinds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            name = (task / "comm").read_text().strip().rstrip("0123456789#-").strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            kinds[name] = kinds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return kinds


def spent_by_thread(
    before: dict[str, float], after: dict[str, float], top: int = 8
) -> dict[str, float]:
    """The ``top`` thread kinds by CPU seconds between two :func:`thread_cpu` readings."""
    spent = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1])[:top])


@dataclass
class Deployment:
    """Bench topics under a fresh prefix, ``n`` synthetic subscribers, and worker processes."""

    base: Settings
    n: int
    workdir: Path
    extra_topic_configs: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workers: list[WorkerProcess] = field(default_factory=list)
    load_s: float = 0.0
    _key: Any = None

    @property
    def settings(self) -> Settings:
        return replace(
            self.base,
            topic_prefix=f"{RUN_PREFIX}-{self.tag}",
            app_id=f"{RUN_PREFIX}-{self.tag}",
            data_dir=str(self.workdir / self.tag),
        )

    def sends_topics(self) -> list[str]:
        return [self.settings.sends_topic(p.value) for p in Priority]

    async def create(self) -> None:
        """The send-task and inbound topics with broker append times, then the rest as Loa
        creates them."""
        settings = self.settings
        stamped = {*self.sends_topics(), settings.inbound_topic}
        for spec in topic_specs(settings):
            if spec.name in stamped:
                configs = {**(spec.topic_configs or {}), **LOG_APPEND}
                if spec.name != settings.inbound_topic:
                    configs.update(self.extra_topic_configs)
                create_log_append_topics(settings, {spec.name: spec.num_partitions}, configs)
        await create_topics(settings)
        self._key = await ensure_local_key(
            settings, ALERT_SENDER, self.workdir / "keys", agencies_path=AGENCIES
        )

    async def load(self) -> float:
        started = time.perf_counter()
        await load_synthetic(self.settings, self.n, SEED, registry())
        self.load_s = time.perf_counter() - started
        return self.n / self.load_s

    async def set_throttle(self, rate: float | None) -> None:
        """Channel limits for every channel (``None`` lifts them)."""
        producer = make_producer(self.settings)
        await producer.start()
        try:
            value = None if rate is None else orjson.dumps({"rate": rate})
            for channel in ("oa", "push", "sms"):
                await producer.send_and_wait(
                    self.settings.channels_topic, value, key=channel.encode()
                )
        finally:
            await producer.stop()

    def start_workers(self, count: int) -> None:
        for i in range(count):
            data_dir = self.workdir / self.tag / f"w{i}"
            data_dir.mkdir(parents=True, exist_ok=True)
            worker = WorkerProcess(
                self.settings,
                self.workdir / f"{self.tag}-worker-{i}.log",
                # its own /ready, waited for as an orchestrator's probe would (wait_ready)
                LOA_METRICS_PORT=str(free_port()),
                LOA_DATA_DIR=str(data_dir),
                # the default log level, as a user's worker runs (a 10M national alert logs
                # 9 lines at INFO; docs/benchmarks.md, "The first alert")
            )
            self.workers.append(worker.start())

    def wait_ready(self, timeout_s: float = 900.0) -> float:
        """Seconds until every worker's ``/ready`` answers 200 (all its partitions restored)."""
        started = time.monotonic()
        for worker in self.workers:
            worker.wait_ready(max(timeout_s - (time.monotonic() - started), 1.0))
        return time.monotonic() - started

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def worker_stats(self) -> list[tuple[float, int]]:
        return [proc_stat(w.proc.pid) for w in self.workers if w.proc is not None]

    async def publish(
        self,
        regions: tuple[str, ...],
        priority: Priority = Priority.EXTREME,
        *,
        expected: int | None = None,
        wait: bool = True,
        producer: Any = None,
    ) -> Published:
        identifier = f"B{uuid.uuid4().hex[:10]}"
        raw = alert_json(identifier, regions, priority)
        own = producer is None
        if own:
            producer = make_producer(self.settings)
            await producer.start()
        try:
            headers = list(signature_headers(self._key, raw))
            meta = await producer.send_and_wait(self.settings.inbound_topic, raw, headers=headers)
        finally:
            if own:
                await producer.stop()
        if wait:
            outcome, record = await wait_decision(
                self.settings, ALERT_SENDER, identifier, offset=meta.offset, timeout_s=300
            )
            if outcome != "accepted":
                raise RuntimeError(f"the benchmark alert was not accepted: {record}")
        return Published(identifier, priority, meta.timestamp, expected)

    async def progress(
        self, published: Published, timeout_s: float = 3600, bar: Any = None
    ) -> dict[int, Progress]:
        """Loa's progress records of the alert once every partition is done (``bar`` follows
        the tasks emitted)."""

        def update(latest: dict[int, Progress]) -> None:
            bar.update(sum(p.emitted for p in latest.values()))

        return await watch_progress(
            self.settings,
            published.alert_id,
            timeout_s=timeout_s,
            on_update=None if bar is None else update,
        )

    def marks(self) -> Marks:
        """Where the send-task topics end now: count from here after the next alerts."""
        return watermarks(self.settings, self.sends_topics())

    def count(self, since: Marks | None = None) -> dict[str, BrokerCount]:
        return count_tasks(self.settings, self.sends_topics(), since=since)

    def tasks_on_broker(self) -> int:
        return end_offsets(self.settings, self.sends_topics())

    def librdkafka(self) -> dict[str, Any]:
        return client_config(self.settings)


async def wait_for(predicate: Any, timeout_s: float, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited over {timeout_s} s")
        await asyncio.sleep(every_s)


def own_figures(progress: dict[int, Progress]) -> dict[str, Any]:
    """Loa's own view of one order set (its progress records)."""
    emitted = sum(p.emitted for p in progress.values())
    started = min(p.started_at for p in progress.values())
    finished = max(p.finished_at or 0.0 for p in progress.values())
    return {
        "targeted": sum(p.targeted for p in progress.values()),
        "emitted": emitted,
        "suppressed": sum(sum(p.suppressed.values()) for p in progress.values()),
        "seconds": finished - started,
        "per_s": emitted / max(finished - started, 1e-9),
    }
