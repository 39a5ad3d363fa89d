"""Directory benchmark: index memory, national selection, restore and load rate.

In-process, on one core (no broker): bytes per subscriber of the index, the time to select a
national audience (and a polygon audience, and a severe alert with opt-outs) among N
subscribers held by one partition, and the time to restore N subscribers from their change
records as the broker serves them (record batches read column-wise + decode + merge). Against
the real broker: the directory load rate (``write_changes``, ``acks=all``), next to the
ceiling of aiokafka's batch producer (one ``append`` per pre-serialized record of the same
size, batches round-robin over the partitions, measured in the same run on the same broker),
and a full restore by :class:`DirectoryService` (fetch + decode + merge) of the loaded
subscribers. The figure that compares across machines is the ratio to the ceiling.

    python -m benchmarks.directory [--subscribers 10000000] [--broker-subscribers 10000000]

Uses LOA_BOOTSTRAP_SERVERS if set, else starts the dev broker on port 19550 (its own data
directory under /tmp) and stops it after. Writes benchmarks/results/directory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import bench_broker, ceiling, tagged, write_results
from streams.directory.index import DirectoryPartition
from streams.directory.load import write_changes
from streams.directory.service import DirectoryService
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import decode_fetched, encode_matrices, encode_subscribers
from streams.fanout.plan import select_audience
from streams.kafkaio.clients import create_topics, make_producer
from streams.kafkaio.ownership import owning
from streams.kafkaio.recordbatch import (
    HEADER_SIZE,
    build_records,
    finish_batch,
    read_partition,
)
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import registry, resolve_targets
from streams.settings.model import Settings

HANOI = "20.90,105.70 20.90,105.95 21.15,105.95 21.15,105.70 20.90,105.70"
_CHUNK = 1_000_000
_FETCH_BYTES = 8 * 1024 * 1024  # what one fetch hands the directory (max partition bytes)
_BATCH_BYTES = 1_000_000  # the loader's record batches


def _order(**fields: Any) -> FanoutOrder:
    values: dict[str, Any] = {
        "alert_id": "bench/1",
        "version": 1,
        "kind": TaskKind.ALERT,
        "priority": Priority.EXTREME,
        "partition": 0,
        "targets": ("VN",),
        "test_only": False,
    }
    values.update(fields)
    return FanoutOrder(**values)


def _best(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _as_fetches(subs: Any, regions: Any, offset: int) -> list[tuple[int, bytes]]:
    """``subs`` as the loader writes them, cut into fetch responses as the broker serves
    them: fixed-layout record batches, plus aiokafka-built batches for the opt-outs."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    fixed, other = encode_matrices(subs, regions)
    batches: list[bytes] = []
    for keys, values in fixed:
        per = _BATCH_BYTES // (keys.shape[1] + values.shape[1] + 16)
        for a in range(0, keys.shape[0], per):
            out, count = build_records(
                keys[a : a + per], values[a : a + per], head_room=HEADER_SIZE
            )
            batches.append(bytes(finish_batch(out, count, timestamp_ms=0)))
    builder, i = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, _BATCH_BYTES), 0
    for key, value in other:
        if builder.append(i, timestamp=0, key=key, value=value, headers=[]) is None:
            batches.append(bytes(builder.build()))
            builder, i = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, _BATCH_BYTES), 0
            builder.append(i, timestamp=0, key=key, value=value, headers=[])
        i += 1
    batches.append(bytes(builder.build()))
    fetches: list[tuple[int, bytes]] = []
    group: list[bytes] = []
    first = offset
    size = 0
    for batch in batches:
        if group and size + len(batch) > _FETCH_BYTES:
            fetches.append((first, b"".join(group)))
            group, first, size = [], offset, 0
        # the broker assigns base offsets
        group.append(offset.to_bytes(8, "big") + batch[8:])
        size += len(batch)
        offset += int.from_bytes(batch[57:61], "big")
    fetches.append((first, b"".join(group)))
    return fetches


def in_process(n: int) -> dict[str, Any]:
    regions = registry()
    index = DirectoryPartition()
    restore_s = 0.0
    records = 0
    for start in range(0, n, _CHUNK):
        size = min(_CHUNK, n - start)
        subs = synthetic_subscribers(size, start + 1, regions, id_base=start, optout_share=0.02)
        fetches = _as_fetches(subs, regions, offset=records)
        del subs
        started = time.perf_counter()
        for first, data in fetches:
            fetched = read_partition(data, first)
            batch, errors = decode_fetched(fetched, regions)
            assert not errors, errors[:3]
            index.apply(batch)
            records += len(fetched)
        restore_s += time.perf_counter() - started
        del fetches
        gc.collect()
    started = time.perf_counter()
    index.compact()
    restore_s += time.perf_counter() - started
    assert len(index) == n

    national_s, national = _best(lambda: select_audience(_order(), index, regions))
    assert len(national) == n
    area = resolve_targets(
        [{"category": ["Met"], "area": [{"areaDesc": "Hà Nội", "polygon": [HANOI]}]}], regions
    )
    polygon = _order(targets=(), cells=area.cells)
    polygon_s, in_polygon = _best(lambda: select_audience(polygon, index, regions))
    severe = _order(priority=Priority.SEVERE, categories=("Met",))
    optout_s, with_optouts = _best(lambda: select_audience(severe, index, regions))
    return {
        "subscribers": n,
        "index_bytes": index.nbytes,
        "bytes_per_subscriber": index.nbytes / n,
        "national_select_s": national_s,
        "polygon_select_s": polygon_s,
        "polygon_audience": len(in_polygon),
        "polygon_cells_compacted": len(area.cells),
        "severe_with_optouts_select_s": optout_s,
        "severe_audience": len(with_optouts),
        "restore_in_process_s": restore_s,
        "restore_in_process_per_s": records / restore_s,
        "restore_in_process_what": "record batches (as fetched) read column-wise, decoded, merged",
    }


async def _leaders_ready(settings: Settings) -> None:
    """Wait until every directory partition has a leader that takes writes (a fresh topic
    answers NotLeader for a moment; that wait is not the loader's)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for p in range(settings.partitions):
            # a tombstone of an id no subscriber has: harmless to the directory
            await producer.send_and_wait(
                settings.directory_topic, None, key=b"%d" % (10**15 + p), partition=p
            )
    finally:
        await producer.stop()


async def on_broker(settings: Settings, n: int) -> dict[str, Any]:
    regions = registry()
    await create_topics(settings)
    await _leaders_ready(settings)
    subs = synthetic_subscribers(n, 7, regions, optout_share=0.02)
    sample = encode_subscribers(subs.take(slice(n // 2, n // 2 + 10_000)), regions)
    key_size = round(sum(len(k) for k, _ in sample) / len(sample))
    value_size = round(sum(len(v or b"") for _, v in sample) / len(sample))
    started = time.perf_counter()
    written = await write_changes(settings, subs, regions)
    load_s = time.perf_counter() - started
    del subs
    gc.collect()
    # a rate: 2M records measure it as well as 10M, without 10M key objects in memory
    ceiling_per_s = await ceiling(settings, min(n, 2_000_000), key_size, value_size)

    service = DirectoryService(settings, regions)
    await service.start()
    try:
        started = time.perf_counter()
        total = 0
        async with owning([service], range(settings.partitions), name="bench"):
            for p in range(settings.partitions):
                total += len(await service.ready(p, timeout_s=900))
        restore_s = time.perf_counter() - started
    finally:
        await service.stop()
    assert total == n, (total, n)
    assert service.bad_records == 0
    return {
        "subscribers": n,
        "partitions": settings.partitions,
        "key_bytes": key_size,
        "value_bytes": value_size,
        "load_s": load_s,
        "load_per_s": written / load_s,
        "ceiling_per_s": ceiling_per_s,
        "load_ratio_to_ceiling": written / load_s / ceiling_per_s,
        "restore_s": restore_s,
        "restore_per_s": n / restore_s,
    }


async def main(n: int, broker_n: int, partitions: int) -> dict[str, Any]:
    local = in_process(n)
    print(
        f"{n:,} subscribers in one partition (one core): "
        f"{local['bytes_per_subscriber']:.1f} B/subscriber (target <= 64) | "
        f"national select {local['national_select_s'] * 1000:.0f} ms (target <= 1000) | "
        f"polygon {local['polygon_select_s'] * 1000:.0f} ms "
        f"({local['polygon_audience']:,} inside) | "
        f"severe with opt-outs {local['severe_with_optouts_select_s'] * 1000:.0f} ms | "
        f"restore (decode + merge) {local['restore_in_process_s']:.1f} s "
        f"({local['restore_in_process_per_s']:,.0f}/s)",
        flush=True,
    )
    broker: dict[str, Any] | None = None
    with (
        tempfile.TemporaryDirectory(prefix="loa-bench-dir-") as tmp,
        bench_broker(partitions, 19550, Path(tmp)) as base,
    ):
        settings = tagged(base, "bench-dir", data_dir=str(Path(tmp) / "data"))
        broker = await on_broker(settings, broker_n)
    print(
        f"{broker_n:,} subscribers on the broker ({partitions} partitions): "
        f"load {broker['load_per_s']:,.0f}/s (target >= 500,000), "
        f"aiokafka batch-producer ceiling {broker['ceiling_per_s']:,.0f}/s, "
        f"ratio {broker['load_ratio_to_ceiling']:.2f} | "
        f"restore by a worker {broker['restore_s']:.1f} s ({broker['restore_per_s']:,.0f}/s)"
        + (
            ""
            if broker_n >= n
            else f", {n:,} at that rate: {n / broker['restore_per_s']:.0f} s (extrapolated)"
        ),
        flush=True,
    )
    return write_results("directory", {"in_process": local, "broker": broker})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000_000)
    parser.add_argument("--broker-subscribers", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.broker_subscribers, args.partitions))
