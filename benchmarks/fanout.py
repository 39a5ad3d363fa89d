"""Fan-out throughput against the producer ceiling measured in the same run.

For each audience size: load N synthetic subscribers, start a worker, publish one national
alert, and time the fan-out from the worker's own progress records (first order started to
last order finished). The ceiling is aiokafka's batch producer sending pre-serialized records
of the same size, partition after partition like the fan-out, to the same broker. The figure
that matters is the ratio (machines are noisy; both run on the same broker in the same minute).

    python -m benchmarks.fanout [--sizes 1000000,10000000] [--partitions 8]

Uses LOA_BOOTSTRAP_SERVERS if set, else starts the dev broker on port 19992 and stops it after.
Writes benchmarks/results/fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.common import ceiling, write_results
from streams.directory.index import DirectoryPartition
from streams.directory.load import load_synthetic
from streams.directory.synthetic import synthetic_subscribers
from streams.fanout.encode import TaskEncoder
from streams.fanout.plan import CapPolicy, PastOrder, plan_audience, select_audience
from streams.ingest.agencies import signature_headers
from streams.ingest.agency_service import ensure_local_key
from streams.kafkaio.clients import create_topics, make_producer
from streams.localrun import WorkerProcess, start_broker, stop_broker
from streams.observe import wait_decision, watch_progress
from streams.records import FanoutOrder, Priority, Progress, TaskKind
from streams.regions import registry
from streams.settings import Settings

ALERT_SENDER = "nchmf.gov.vn"
AGENCIES = Path(__file__).resolve().parent.parent / "deploy" / "agencies"


def national_alert(identifier: str, regions: tuple[str, ...] = ("VN",)) -> bytes:
    return orjson.dumps(
        {
            "identifier": identifier,
            "sender": ALERT_SENDER,
            "sent": "2026-11-23T08:00:00+07:00",
            "info": [
                {
                    "event": "Bench",
                    "urgency": "Immediate",
                    "severity": "Extreme",
                    "headline": "National benchmark alert",
                    "area": [{"areaDesc": "Viet Nam", "regions": list(regions)}],
                }
            ],
        }
    )


def sample_task(alert_id: str, n: int) -> tuple[int, int]:
    """Average key and value size of this alert's send tasks."""
    regions = registry()
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(min(n, 50_000), 1, regions, id_base=n - min(n, 50_000)))
    order = FanoutOrder(alert_id, 1, TaskKind.ALERT, Priority.EXTREME, 0, ("VN",), False)
    audience = select_audience(order, index, regions)
    kinds = np.zeros(len(audience), dtype=np.uint8)
    pairs = list(TaskEncoder(order).encode(audience, 0, 50_000, kinds))
    return (
        round(sum(len(k) for k, _ in pairs) / len(pairs)),
        round(sum(len(v) for _, v in pairs) / len(pairs)),
    )


async def fanout_run(settings: Settings, n: int, workdir: Path) -> dict[str, Any]:
    regions = registry()
    await create_topics(settings)
    t0 = time.perf_counter()
    await load_synthetic(settings, n, 1, regions)
    load_s = time.perf_counter() - t0
    key = await ensure_local_key(settings, ALERT_SENDER, workdir / "keys", agencies_path=AGENCIES)

    async def publish(identifier: str, raw: bytes) -> dict[int, Progress]:
        producer = make_producer(settings)
        await producer.start()
        try:
            headers = list(signature_headers(key, raw))
            meta = await producer.send_and_wait(settings.inbound_topic, raw, headers=headers)
        finally:
            await producer.stop()
        outcome, record = await wait_decision(
            settings, ALERT_SENDER, identifier, offset=meta.offset
        )
        if outcome != "accepted":
            raise RuntimeError(f"the benchmark alert was not accepted: {record}")
        return await watch_progress(settings, f"{ALERT_SENDER}/{identifier}", timeout_s=1800)

    worker = WorkerProcess(settings, workdir / f"worker-{n}.log").start()
    try:
        # A one-ward alert first: every partition's order waits for its directory to be
        # replayed, so once it is done the national one measures the fan-out, not the restore.
        t0 = time.perf_counter()
        warm = f"WARMUP-{uuid.uuid4().hex[:6]}"
        await publish(warm, national_alert(warm, (regions.ward_codes[0],)))
        restore_s = time.perf_counter() - t0
        identifier = f"NATIONAL-{uuid.uuid4().hex[:6]}"
        alert_id = f"{ALERT_SENDER}/{identifier}"
        published = time.time()
        progress = await publish(identifier, national_alert(identifier))
    finally:
        worker.stop()
    emitted = sum(p.emitted for p in progress.values())
    started = min(p.started_at for p in progress.values())
    finished = max(p.finished_at or 0.0 for p in progress.values())
    first_task = min(p.first_task_at or finished for p in progress.values())
    key_size, value_size = sample_task(alert_id, n)
    return {
        "subscribers": n,
        "targeted": sum(p.targeted for p in progress.values()),
        "emitted": emitted,
        "fanout_seconds": finished - started,
        "fanout_tasks_per_s": emitted / (finished - started),
        "publish_to_last_task_s": finished - published,
        "time_to_first_task_s": first_task - started,
        "directory_load_s": load_s,
        "worker_restore_and_warmup_s": restore_s,
        "directory_load_per_s": n / load_s,
        "key_bytes": key_size,
        "value_bytes": value_size,
    }


def plan_costs(per_partition: int) -> dict[str, float]:
    """Seconds to plan one partition's audience: plain alert, lineage dedup, caps."""
    regions = registry()
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(per_partition, 1, regions))
    index.compact()

    def order(alert_id: str, version: int, kind: TaskKind, priority: Priority) -> FanoutOrder:
        return FanoutOrder(alert_id, version, kind, priority, 0, ("VN",), False)

    def past(o: FanoutOrder) -> PastOrder:
        return PastOrder(o, int(index.ids[-1]), time.time())

    def timed(o: FanoutOrder, history: list[PastOrder], caps: CapPolicy | None) -> float:
        started = time.perf_counter()
        plan_audience(o, index, regions, history, caps)
        return time.perf_counter() - started

    caps = CapPolicy(3, 86_400, time.time())
    first = order("b/A", 1, TaskKind.ALERT, Priority.EXTREME)
    routines = [past(order(f"b/R{i}", 1, TaskKind.ALERT, Priority.ROUTINE)) for i in range(3)]
    return {
        "subscribers": per_partition,
        "select_s": timed(first, [], None),
        "update_dedup_s": timed(
            order("b/A", 2, TaskKind.UPDATE, Priority.EXTREME), [past(first)], None
        ),
        "routine_caps_s": timed(order("b/R9", 1, TaskKind.ALERT, Priority.ROUTINE), routines, caps),
    }


async def transaction_cost(settings: Settings, n: int, chunk: int, size: int) -> dict[str, float]:
    """Records/s of chunked emission to one partition with and without a transaction per chunk."""
    topic = settings.sends_topic("routine")
    keys = [b"%07d" % i for i in range(chunk)]
    value = b"x" * size
    rates: dict[str, float] = {}
    for mode in ("idempotent", "transactional"):
        producer = make_producer(
            settings,
            **({"transactional_id": f"{settings.app_id}-bench"} if mode == "transactional" else {}),
        )
        await producer.start()
        try:
            started = time.perf_counter()
            for _ in range(n // chunk):
                if mode == "transactional":
                    await producer.begin_transaction()
                pending = []
                batch = producer.create_batch()
                for key in keys:
                    if batch.append(timestamp=None, key=key, value=value) is None:
                        pending.append(await producer.send_batch(batch, topic, partition=0))
                        batch = producer.create_batch()
                        batch.append(timestamp=None, key=key, value=value)
                pending.append(await producer.send_batch(batch, topic, partition=0))
                await asyncio.gather(*pending)
                if mode == "transactional":
                    await producer.commit_transaction()
            rates[mode] = (n // chunk) * chunk / (time.perf_counter() - started)
        finally:
            await producer.stop()
    rates["ratio"] = rates["transactional"] / rates["idempotent"]
    return rates


async def main(sizes: list[int], partitions: int) -> dict[str, Any]:
    bootstrap = os.environ.get("LOA_BOOTSTRAP_SERVERS")
    base = Settings(bootstrap_servers=bootstrap or "127.0.0.1:19992", partitions=partitions)
    os.environ.setdefault("LOA_KAFKA_PORT", "19992")
    started_broker = False if bootstrap else start_broker(base)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
            for n in sizes:
                tag = uuid.uuid4().hex[:8]
                settings = Settings(
                    bootstrap_servers=base.bootstrap_servers,
                    partitions=partitions,
                    topic_prefix=f"bench-{tag}",
                    app_id=f"bench-{tag}",
                    data_dir=str(Path(tmp) / tag),
                )
                run = await fanout_run(settings, n, Path(tmp))
                run["ceiling_tasks_per_s"] = await ceiling(
                    settings, n, run["key_bytes"], run["value_bytes"]
                )
                run["ratio"] = run["fanout_tasks_per_s"] / run["ceiling_tasks_per_s"]
                run["plan_costs"] = plan_costs(n // partitions)
                run["transaction_cost"] = await transaction_cost(
                    settings, min(n, 1_000_000), settings.fanout_chunk, run["value_bytes"]
                )
                results.append(run)
                print(
                    f"{n:>11,} subscribers: fan-out {run['fanout_tasks_per_s']:>10,.0f} tasks/s"
                    f" | ceiling {run['ceiling_tasks_per_s']:>10,.0f} rec/s"
                    f" | ratio {run['ratio']:.2f} (target >= 0.70)"
                    f" | {run['fanout_seconds']:.1f} s"
                    f", first task after {run['time_to_first_task_s']:.2f} s"
                    f" | directory load {run['directory_load_per_s']:,.0f}/s",
                    flush=True,
                )
                plan, txn = run["plan_costs"], run["transaction_cost"]
                print(
                    f"{'':>13}per partition of {plan['subscribers']:,}: select"
                    f" {plan['select_s'] * 1e3:.0f} ms, update dedup"
                    f" {plan['update_dedup_s'] * 1e3:.0f} ms, routine caps"
                    f" {plan['routine_caps_s'] * 1e3:.0f} ms | transaction per chunk:"
                    f" {txn['ratio']:.2f} x the idempotent producer",
                    flush=True,
                )
    finally:
        if started_broker:
            stop_broker(base)
    return write_results("fanout", {"partitions": partitions, "runs": results})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.partitions))
