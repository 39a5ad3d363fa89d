"""Takeover benchmark: partitions holding N subscribers change hands; assignment → first task.

One run, one broker, real ``loa worker`` processes:

1. N synthetic subscribers are loaded into the directory topic (8 partitions).
2. A first worker restores them and writes directory snapshots (``LOA_SNAPSHOT_INTERVAL_S``);
   once every partition's newest snapshot includes the whole topic, it is stopped. Then a
   tail of changes arrives (moves, unsubscribes, new subscribers) that no snapshot has.
3. **Full replay**: a province alert's orders (one per partition, as ingest writes them) wait
   on the orders topic; a worker without snapshots (``LOA_SNAPSHOT_INTERVAL_S=0``) starts,
   gets the partitions, replays the whole directory and fans out.
4. **From snapshot**: the same with a second alert and a worker whose data directory holds the
   first worker's snapshots: it loads them and replays only the tail.

Measured from outside Loa, on one clock: *assignment* is when a poller of the broker's group
description (``DescribeGroups`` every 20 ms) first sees the group ``Stable`` with the new
member; *first task* is the broker's ``LogAppendTime`` of the earliest committed task of the
alert, read by an independent read_committed consumer (the bench creates the send-task topic
with ``message.timestamp.type=LogAppendTime``). Also reported: process start → first task,
which adds Python start-up, Faust start and the group join.

    python -m benchmarks.takeover [--subscribers 10000000] [--partitions 8]

Uses LOA_BOOTSTRAP_SERVERS if set, else starts the dev broker on port 19551 (its own data
directory under /tmp) and stops it after. Writes benchmarks/results/takeover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common import bench_broker, tagged, write_results
from streams.demo.localrun import WorkerProcess
from streams.directory.index import ChangeBatch
from streams.directory.load import write_changes
from streams.directory.snapshot import partition_dir
from streams.directory.synthetic import synthetic_subscribers
from streams.kafkaio.clients import create_topics, make_producer
from streams.receipts.observe import watch_progress
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.settings.model import Settings
from streams.topics import replication

PROVINCE = "VN-01"
TAIL = 20_000
T = TypeVar("T")
_WORKER_ENV = {"LOA_SESSION_TIMEOUT_S": "6", "LOA_METRICS_PORT": "0"}


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    return admin


async def _log_append_sends(settings: Settings) -> None:
    """The extreme send-task topic, created by the bench with broker-clock timestamps."""
    admin = await _admin(settings)
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        await admin.create_topics(
            [
                NewTopic(
                    settings.sends_topic(Priority.EXTREME.value),
                    settings.partitions,
                    replication(settings, brokers).factor,
                    topic_configs={"message.timestamp.type": "LogAppendTime"},
                )
            ]
        )
    finally:
        await admin.close()


async def _members(admin: AIOKafkaAdminClient, group: str) -> tuple[str, set[str]]:
    """(state, member ids with an assignment) of ``group`` as the coordinator describes it."""
    (response,) = await admin.describe_consumer_groups([group])
    (described,) = response.to_object()["groups"]
    members = {
        m["member_id"] for m in described["members"] if len(m.get("member_assignment") or b"")
    }
    return str(described["state"]), members


async def _assignment_time(settings: Settings, before: set[str], stop: asyncio.Event) -> float:
    """Wall time at which the group is first seen Stable with a member not in ``before``."""
    admin = await _admin(settings)
    try:
        while not stop.is_set():
            state, members = await _members(admin, settings.app_id)
            if state == "Stable" and members - before:
                return time.time()
            await asyncio.sleep(0.02)
        raise RuntimeError("the worker never got an assignment")
    finally:
        await admin.close()


async def _first_task(settings: Settings, alert_id: str, timeout_s: float) -> float:
    """Broker LogAppendTime (s) of the earliest committed task of ``alert_id``, read by an
    independent read_committed consumer; waits until every partition has shown one."""
    topic = settings.sends_topic(Priority.EXTREME.value)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    firsts: dict[int, int] = {}
    needle = f'"alert_id":"{alert_id}"'.encode()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        async with asyncio.timeout(timeout_s):
            while len(firsts) < settings.partitions:
                batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
                for tp, records in batch.items():
                    for record in records:
                        if tp.partition in firsts:
                            break
                        if needle in (record.value or b""):
                            assert record.timestamp_type == 1, "not LogAppendTime"
                            firsts[tp.partition] = record.timestamp
    finally:
        await consumer.stop()
    return min(firsts.values()) / 1000


async def _write_orders(settings: Settings, alert_id: str) -> None:
    """One order per partition, as ingest writes them for a province alert."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for p in range(settings.partitions):
            order = FanoutOrder(
                alert_id=alert_id,
                version=1,
                kind=TaskKind.ALERT,
                priority=Priority.EXTREME,
                partition=p,
                targets=(PROVINCE,),
                test_only=False,
            )
            await producer.send_and_wait(
                settings.orders_topic, order.to_json(), key=alert_id.encode(), partition=p
            )
    finally:
        await producer.stop()


async def _snapshots_complete(settings: Settings, data_dir: str, timeout_s: float) -> None:
    """Until every partition's newest snapshot includes the whole directory topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.directory_topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    async with asyncio.timeout(timeout_s):
        for tp in tps:
            while True:
                snaps = sorted(
                    partition_dir(data_dir, tp.topic, tp.partition).glob("snap-*"), reverse=True
                )
                if snaps and int(snaps[0].name.removeprefix("snap-")) >= ends[tp]:
                    break
                await asyncio.sleep(0.5)


async def _while_alive(worker: WorkerProcess, work: Coroutine[Any, Any, T]) -> T:
    """``work``, unless ``worker`` exits first: a worker that dies (a bug, no memory) must end
    the bench with its log, not leave it waiting out its timeouts."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if not worker.alive:
                code = worker.proc.returncode if worker.proc is not None else None
                raise RuntimeError(f"the worker exited (status {code}); see {worker.log_path}")
            await asyncio.wait({task}, timeout=0.5)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _takeover(
    settings: Settings, alert_id: str, data_dir: str, log: Path, **env: str
) -> dict[str, Any]:
    """Orders of ``alert_id`` wait; a worker starts on ``data_dir``; assignment → first task."""
    await _write_orders(settings, alert_id)
    admin = await _admin(settings)
    try:
        _, before = await _members(admin, settings.app_id)
    finally:
        await admin.close()
    stop = asyncio.Event()
    worker = WorkerProcess(replace(settings, data_dir=data_dir), log, **_WORKER_ENV, **env)
    started = time.time()
    worker.start()
    try:
        assigned = asyncio.create_task(_assignment_time(settings, before, stop))
        try:
            first = await _while_alive(worker, _first_task(settings, alert_id, timeout_s=600))
        finally:
            stop.set()
            assignment = await assigned
        await watch_progress(settings, alert_id, timeout_s=600)
    finally:
        worker.stop()
    text = await asyncio.to_thread(log.read_text, errors="replace")
    loaded = len(re.findall(r"directory partition \d+: \d+ subscribers from ", text))
    return {
        "assignment_to_first_task_s": first - assignment,
        "process_start_to_first_task_s": first - started,
        "partitions_from_snapshot": loaded,
        "worker_log_breakdown_s": _breakdown(text),
    }


def _breakdown(text: str) -> dict[str, float]:
    """Where the time after the assignment went, by the worker's own log lines (a breakdown
    to guide work, not a measurement: the figures above are the ones taken from outside)."""
    stamps: dict[str, float] = {}
    marks = {
        "assigned": "Setting newly assigned partitions",
        "directory_owned": "directory owns partitions",
        "orders_restored": "resumed",
    }
    for line in text.splitlines():
        found = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]", line)
        if found is None:
            continue
        for name, needle in marks.items():
            if needle in line and (name == "orders_restored" or name not in stamps):
                at = time.mktime(time.strptime(found[1], "%Y-%m-%d %H:%M:%S"))
                stamps[name] = at + int(found[2]) / 1000
    if "assigned" not in stamps:
        return {}
    return {
        f"assignment_to_{name}": at - stamps["assigned"]
        for name, at in stamps.items()
        if name != "assigned"
    }


def _newest_bytes(root: Path) -> int:
    """Bytes of the newest snapshot of every partition (the one a takeover loads)."""
    total = 0
    for part in root.glob("snapshots/*/*"):
        newest = max(part.glob("snap-*"))
        total += sum(f.stat().st_size for f in newest.glob("*.npy"))
    return total


def _tail(n: int, regions: Any) -> ChangeBatch:
    """Changes after the snapshots: moves, unsubscribes and new subscribers."""
    third = TAIL // 3
    moved = synthetic_subscribers(third, 501, regions, id_base=n // 2)
    gone = synthetic_subscribers(third, 502, regions, id_base=n // 3)
    gone = replace(gone, deleted=np.ones(third, dtype=np.bool_))
    fresh = synthetic_subscribers(TAIL - 2 * third, 503, regions, id_base=n + 10)
    return ChangeBatch.concat([moved, gone, fresh])


async def on_broker(settings: Settings, n: int, workdir: Path) -> dict[str, Any]:
    regions = registry()
    await _log_append_sends(settings)
    await create_topics(settings)
    started = time.perf_counter()
    await write_changes(settings, synthetic_subscribers(n, 7, regions, optout_share=0.02), regions)
    print(f"loaded {n:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)

    snapshots = str(workdir / "with-snapshots")
    primer = WorkerProcess(
        replace(settings, data_dir=snapshots),
        workdir / "primer.log",
        **_WORKER_ENV,
        LOA_SNAPSHOT_INTERVAL_S="2",
    ).start()
    try:
        started = time.perf_counter()
        await _while_alive(primer, _snapshots_complete(settings, snapshots, timeout_s=900))
        print(f"snapshots written after {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        primer.stop()
    snapshot_bytes = await asyncio.to_thread(_newest_bytes, Path(snapshots))
    await write_changes(settings, _tail(n, regions), regions)

    full = await _takeover(
        settings,
        "bench/takeover-full",
        str(workdir / "empty"),
        workdir / "full.log",
        LOA_SNAPSHOT_INTERVAL_S="0",
    )
    print(f"full replay: {full}", flush=True)
    fast = await _takeover(
        settings,
        "bench/takeover-snapshot",
        snapshots,
        workdir / "snapshot.log",
        LOA_SNAPSHOT_INTERVAL_S="3600",
    )
    print(f"from snapshot: {fast}", flush=True)
    assert full["partitions_from_snapshot"] == 0, full
    assert fast["partitions_from_snapshot"] == settings.partitions, fast
    return {
        "subscribers": n,
        "partitions": settings.partitions,
        "tail_changes": TAIL,
        "snapshot_bytes": snapshot_bytes,
        "full_replay": full,
        "from_snapshot": fast,
        "speedup": full["assignment_to_first_task_s"] / fast["assignment_to_first_task_s"],
        "target_assignment_to_first_task_s": 2.0,
    }


async def main(
    n: int, partitions: int, workdir: str | None, name: str = "takeover"
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="loa-takeover-"))
        base = stack.enter_context(bench_broker(partitions, 19551, Path(tmp)))
        result = await on_broker(tagged(base, "bench-to"), n, Path(tmp))
    report = write_results(name, result)
    print(
        f"takeover of {n:,} subscribers in {partitions} partitions, assignment → first task: "
        f"full replay {result['full_replay']['assignment_to_first_task_s']:.2f} s, "
        f"from snapshot {result['from_snapshot']['assignment_to_first_task_s']:.2f} s "
        f"(target <= 2 s)",
        flush=True,
    )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=lambda v: int(float(v)), default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--keep", help="keep worker logs and snapshots under this directory")
    parser.add_argument(
        "--name", default="takeover", help="results file: benchmarks/results/NAME.json"
    )
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.subscribers, args.partitions, args.keep, args.name))
