"""Fault tests on the real broker: kill -9 workers, restart the broker, feed poison.

Helpers here start workers (each in its own process group, killed with SIGKILL as a crash
would), throttle a fan-out through the channels topic so it can be caught half way, and read
the committed send tasks back with a ``read_committed`` consumer, parsing only keys (the
recipient id in ASCII decimal) into a numpy array. Every loop is bounded; every process a test
starts is gone when it ends (checked with ``pgrep`` on its process group).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition

from streams.demo.localrun import KAFKA_SCRIPT, WorkerProcess
from streams.directory.load import load_synthetic
from streams.directory.synthetic import synthetic_subscribers
from streams.ingest.signatures import KeyPair
from streams.kafkaio.clients import create_topics, make_producer
from streams.receipts.observe import watch_progress
from streams.records import Priority, Progress
from streams.regions import RegionRegistry, registry
from streams.settings.model import Settings
from tests.integration.conftest import LiveLoa, alert, register_agencies

#: Workers of the fault tests notice a dead peer after this many seconds (the broker's floor).
SESSION_TIMEOUT_S = "6"
SEED = 23
#: A broker of a test's own (bounced or cut off) listens next to the session broker's ports
#: (the session broker's KRaft controller takes +1; this one takes +2 and +3).
OWN_BROKER_PORT = int(os.environ.get("LOA_TEST_KAFKA_PORT", "19392")) + 2
#: Where every fault test appends the gaps it measured (one JSON object per line).
GAPS_FILE = Path(".loa") / "fault-gaps.jsonl"

_STARTED: list[WorkerProcess] = []


def group_alive(pid: int) -> list[str]:
    """The processes still in the process group ``pid`` (a worker's own session)."""
    out = subprocess.run(["pgrep", "-g", str(pid), "-a"], capture_output=True, text=True)
    return out.stdout.splitlines()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Final check: no worker process group of these tests outlives them."""
    yield
    leftovers = {w.proc.pid: group_alive(w.proc.pid) for w in _STARTED if w.proc is not None}
    assert not any(leftovers.values()), f"processes left behind: {leftovers}"


@dataclass
class Workers:
    """Starts ``loa worker`` processes for one test and stops them all at its end."""

    tmp: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, settings: Settings, name: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(
            settings,
            self.tmp / f"{name}.log",
            LOA_SESSION_TIMEOUT_S=SESSION_TIMEOUT_S,
            LOA_METRICS_PORT="0",
            **env,
        ).start()
        self.started.append(worker)
        _STARTED.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop(timeout_s=20)
        for worker in self.started:
            assert worker.proc is not None
            assert not group_alive(worker.proc.pid), f"{worker.log_path.name} left processes"


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def owned_partitions(worker: WorkerProcess) -> set[int] | None:
    """The directory partitions the worker's log last said it owns (None: not yet said)."""
    if not worker.log_path.exists():
        return None
    found = re.findall(r"directory owns partitions \[([0-9, ]*)\]", worker.log_path.read_text())
    if not found:
        return None
    return {int(p) for p in found[-1].split(",") if p.strip()}


async def wait_until(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- a directory


@dataclass
class Stage:
    """Topics with a synthetic directory and registered agencies (no worker yet)."""

    settings: Settings
    regions: RegionRegistry
    subscribers: int
    keys: dict[str, KeyPair]

    def app(self, tag: str) -> Settings:
        """Settings of a worker group of its own on these topics."""
        return Settings(
            bootstrap_servers=self.settings.bootstrap_servers,
            topic_prefix=self.settings.topic_prefix,
            app_id=f"{self.settings.app_id}-{tag}",
            partitions=self.settings.partitions,
            data_dir=self.settings.data_dir,
        )

    def live(self, worker: WorkerProcess) -> LiveLoa:
        """The integration tests' helpers (signed publish, decisions) for these topics."""
        return LiveLoa(self.settings, self.regions, None, worker, self.keys)  # type: ignore[arg-type]


async def make_stage(bootstrap: str, tmp: Path, subscribers: int, *, partitions: int = 4) -> Stage:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"ft-{tag}",
        app_id=f"ft-{tag}",
        partitions=partitions,
        data_dir=str(tmp / "data"),
    )
    regions = registry()
    await create_topics(settings)
    await log_append_time(settings)
    keys = await register_agencies(settings, tmp / "keys")
    if subscribers:
        await load_synthetic(settings, subscribers, SEED, regions)
    return Stage(settings, regions, subscribers, keys)


# --------------------------------------------------------------------------- fan-out control


async def set_channel_rate(settings: Settings, channel: str, rate: float | None) -> None:
    """Cluster-wide limit of ``channel`` in tasks/s (None: a tombstone, no limit)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        value = None if rate is None else orjson.dumps({"rate": rate})
        await producer.send_and_wait(settings.channels_topic, value, key=channel.encode())
    finally:
        await producer.stop()


async def publish_national(stage: Stage, worker: WorkerProcess) -> str:
    """A signed national extreme alert; returns its alert id once ingest has accepted it."""
    live = stage.live(worker)
    identifier = f"F-{uuid.uuid4().hex[:8]}"
    offset = await live.publish(orjson.dumps(alert(identifier, ["VN"])))
    outcome, record = await live.decision("test.agency.vn", identifier, offset=offset)
    assert outcome == "accepted", record
    return str(record["alert_id"])


class _Reached(Exception):
    def __init__(self, latest: dict[int, Progress]) -> None:
        self.latest = dict(latest)


async def wait_progress(
    settings: Settings,
    alert_id: str,
    reached: Callable[[dict[int, Progress]], bool],
    *,
    timeout_s: float,
) -> dict[int, Progress]:
    """The committed progress of ``alert_id`` (latest per partition) once ``reached`` holds."""

    def check(latest: dict[int, Progress]) -> None:
        if reached(latest):
            raise _Reached(latest)

    try:
        return await watch_progress(settings, alert_id, on_update=check, timeout_s=timeout_s)
    except _Reached as got:
        return got.latest


async def wait_done(
    settings: Settings, alert_id: str, *, timeout_s: float = 180
) -> dict[int, Progress]:
    """The committed progress of ``alert_id`` once every partition's order is done."""
    return await wait_progress(
        settings,
        alert_id,
        lambda x: len(x) == settings.partitions and all(p.done for p in x.values()),
        timeout_s=timeout_s,
    )


async def read_back(stage: Stage, settings: Settings, start: dict[TopicPartition, int]) -> ReadBack:
    """Every committed task after ``start`` (librdkafka, read_committed) against the stage's
    whole synthetic directory (a national alert's audience)."""
    got = await committed_recipients(settings, start)
    return compare(got, synthetic_subscribers(stage.subscribers, SEED, stage.regions).ids)


def emitted_share(total: int) -> Callable[[dict[int, Progress]], float]:
    return lambda latest: sum(p.emitted for p in latest.values()) / total


async def sends_end(settings: Settings, priority: str = "extreme") -> dict[TopicPartition, int]:
    """End offsets of a send-task topic (read_committed), to read a test's tasks from."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        topic = settings.sends_topic(priority)
        return dict(
            await consumer.end_offsets(
                [TopicPartition(topic, p) for p in range(settings.partitions)]
            )
        )
    finally:
        await consumer.stop()


async def committed_recipients(
    settings: Settings,
    start: dict[TopicPartition, int],
    *,
    timeout_s: float = 120.0,
    connection: dict[str, Any] | None = None,
) -> npt.NDArray[np.uint64]:
    """Recipient ids of every committed task after ``start``, with repeats, parsed from keys
    (``connection``: the reader's own options on a secured cluster, else the bootstrap)."""
    return (await committed_tasks(settings, start, timeout_s=timeout_s, connection=connection)).ids


@dataclass(frozen=True)
class ReadBack:
    committed: int
    missing: int
    duplicate: int
    extra: int


def compare(got: npt.NDArray[np.uint64], expected: npt.NDArray[np.uint64]) -> ReadBack:
    """Committed tasks against the expected recipients: counts of each kind of error."""
    ids, counts = np.unique(got, return_counts=True)
    present = np.isin(expected, ids)
    return ReadBack(
        committed=int(got.shape[0]),
        missing=int((~present).sum()),
        duplicate=int((counts > 1).sum()),
        extra=int((~np.isin(ids, expected)).sum()),
    )


def kafka_env(port: int, run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LOA_KAFKA_PORT=str(port), LOA_KAFKA_DIR=str(run_dir))
    return env


def kafka(action: str, env: dict[str, str]) -> None:
    # kafka.sh gives up after LOA_KAFKA_START_TIMEOUT (60 s) and stops what it started
    limit = float(env.get("LOA_KAFKA_START_TIMEOUT", "60")) + 60
    done = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), action], env=env, capture_output=True, text=True, timeout=limit
    )
    assert done.returncode == 0, f"kafka.sh {action}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A broker of the test's own on :data:`OWN_BROKER_PORT` (the test may stop it, restart it
    or change its settings), stopped at the end."""
    env = kafka_env(OWN_BROKER_PORT, tmp_path / "kafka")
    try:
        kafka("start", env)  # inside: a start that fails half way is stopped too
        yield env
    finally:
        kafka("stop", env)
        status = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), "status"], env=env, capture_output=True, check=False
        )
        assert status.returncode == 3, "the test's broker is still running"


# --------------------------------------------------------------------------- gaps


async def log_append_time(settings: Settings) -> None:
    """Stamp send tasks with the broker's clock (LogAppendTime): the gaps the tests report are
    measured by the broker, not by the workers they judge."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.sends_topic(prio.value),
                    configs={"message.timestamp.type": "LogAppendTime"},
                )
                for prio in Priority
            ]
        )
    finally:
        await admin.close()


@dataclass(frozen=True)
class Committed:
    """Every committed task after a start: recipient id, partition, broker append time (ms)."""

    ids: npt.NDArray[np.uint64]
    partitions: npt.NDArray[np.int32]
    append_ms: npt.NDArray[np.int64]


async def committed_tasks(
    settings: Settings,
    start: dict[TopicPartition, int],
    *,
    timeout_s: float = 120.0,
    connection: dict[str, Any] | None = None,
) -> Committed:
    """Like :func:`committed_recipients`, with each task's partition and LogAppendTime.

    The reader is librdkafka's (confluent-kafka), ``isolation.level=read_committed``: it shares
    no code with the aiokafka clients Loa writes with, so a transaction Loa's client and broker
    disagree about cannot hide in a shared bug. ``connection`` holds librdkafka options
    (``bootstrap.servers``, security) for a secured cluster; else the settings' bootstrap.
    """
    config = {
        **(connection or {"bootstrap.servers": settings.bootstrap_servers}),
        "group.id": f"loa-test-readback-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "fetch.max.bytes": 32 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
    }
    return await asyncio.to_thread(_read_committed, config, start, timeout_s)


def _read_committed(
    config: dict[str, Any], start: dict[TopicPartition, int], timeout_s: float
) -> Committed:
    consumer = Consumer(config)
    keys: list[bytes] = []
    parts: list[int] = []
    stamps: list[int] = []
    try:
        tps = [RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in start.items()]
        consumer.assign(tps)
        # the end of each partition as of now: its last stable offset (read_committed)
        ends = {
            (t.topic, t.partition): consumer.get_watermark_offsets(t, timeout=30)[1] for t in tps
        }
        left = {k for k, end in ends.items() if end > start[TopicPartition(*k)]}
        deadline = time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read-back of {sorted(left)} took over {timeout_s} s")
            for msg in consumer.consume(num_messages=100_000, timeout=0.5):
                where = (msg.topic(), msg.partition())
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(msg.error())
                    left.discard(where)  # nothing after: markers or aborted records at the end
                    continue
                keys.append(msg.key())
                parts.append(msg.partition())
                stamps.append(msg.timestamp()[1])
                if msg.offset() + 1 >= ends[where]:
                    left.discard(where)
    finally:
        consumer.close()
    if not keys:
        return Committed(np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    return Committed(
        np.array(keys).astype(np.uint64),
        np.array(parts, dtype=np.int32),
        np.array(stamps, dtype=np.int64),
    )


@dataclass(frozen=True)
class Gaps:
    """The longest silences between committed tasks, by the broker's clock."""

    #: Longest time with no committed task appended on any partition.
    any_partition_s: float
    #: Longest time one partition went without a committed task, between its first and last.
    one_partition_s: float


def gaps(tasks: Committed) -> Gaps:
    if tasks.append_ms.shape[0] < 2:
        return Gaps(0.0, 0.0)
    overall = np.diff(np.sort(tasks.append_ms))
    worst = 0
    for p in np.unique(tasks.partitions).tolist():
        mine = np.sort(tasks.append_ms[tasks.partitions == p])
        if mine.shape[0] > 1:
            worst = max(worst, int(np.diff(mine).max()))
    return Gaps(float(overall.max()) / 1000, worst / 1000)


def record_gaps(scenario: str, found: Gaps, read_back: ReadBack, **extra: object) -> None:
    """Log the figures and append them to :data:`GAPS_FILE` (the README's failure table)."""
    row = {
        "scenario": scenario,
        "largest_gap_any_partition_s": round(found.any_partition_s, 3),
        "largest_gap_one_partition_s": round(found.one_partition_s, 3),
        "committed": read_back.committed,
        "missing": read_back.missing,
        "duplicate": read_back.duplicate,
        **extra,
    }
    logging.getLogger(__name__).warning("fault figures: %s", row)
    GAPS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with GAPS_FILE.open("a") as out:
        out.write(orjson.dumps(row).decode() + "\n")
