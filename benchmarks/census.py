"""Census benchmark: what the directory census costs a worker, at N subscribers in one partition.

In-process, no broker. For one partition of N synthetic subscribers (the generator's locations
are drawn independently of the home ward, the worst case for the located table): the time to
build and encode a census (as the directory service does it, in a worker thread), its size on
the wire, the longest stall of the event loop while a census is built in a thread (numpy sorts
release the GIL), the extra cost the census puts on the next merge of changes (the columns are
shared copy-on-write, as for a snapshot), and the time to decode a census and count a reach
(province, country, circle) from it, as ingest would per decision.

    python -m benchmarks.census [--subscribers 10000000] [--repeat 3]

Writes benchmarks/results/census.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from typing import Any

import h3
import numpy as np

from benchmarks.common import write_results
from streams.directory.census import audience_reach, build_census, decode_census, encode_census
from streams.directory.index import DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.regions import circle_cells, registry

REGIONS = registry()


def _census_bytes(index: DirectoryPartition) -> bytes:
    census = build_census(
        index.columns(),
        partition=0,
        offset=0,
        made_at=time.time(),
        regions=REGIONS,
        h3_resolution=7,
    )
    return encode_census(census)


async def _loop_stall(index: DirectoryPartition) -> tuple[float, float]:
    """(seconds the census took in a thread, longest gap of a 1 ms ticker meanwhile)."""
    done = asyncio.Event()
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now

    ticker = asyncio.create_task(tick())
    began = time.perf_counter()
    await asyncio.to_thread(_census_bytes, index)
    took = time.perf_counter() - began
    done.set()
    await ticker
    return took, worst


def _merge_cost(index: DirectoryPartition, shared: bool, updates: int) -> float:
    """Seconds to merge ``updates`` in-place changes, with the columns handed out or not."""
    batch = synthetic_subscribers(updates, 99, REGIONS)
    batch = replace(batch, ids=np.sort(np.random.default_rng(1).choice(index.ids, updates, False)))
    if shared:
        index.columns()
    index.apply(batch)
    began = time.perf_counter()
    index.compact()
    return time.perf_counter() - began


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.subscribers
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(n, 1, REGIONS))
    index.compact()

    builds, raws = [], b""
    for _ in range(args.repeat):
        began = time.perf_counter()
        raws = _census_bytes(index)
        builds.append(time.perf_counter() - began)
    stalls = [asyncio.run(_loop_stall(index)) for _ in range(args.repeat)]
    merges = {
        shared: statistics.median(_merge_cost(index, shared, 10_000) for _ in range(args.repeat))
        for shared in (False, True)
    }
    began = time.perf_counter()
    census = decode_census(raws)
    decode_s = time.perf_counter() - began
    lat, lon, radius = 10.78, 106.68, 6.0
    circle = sorted(h3.compact_cells(circle_cells(lat, lon, radius, 7)))
    reach_s = {}
    for name, codes, cells in (
        ("province", ["VN-01"], []),
        ("country", ["VN"], []),
        ("circle", [], circle),
        ("province_and_circle", ["VN-79"], circle),
    ):
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            audience_reach(
                {0: census}, REGIONS, targets=codes, cells=cells, test_only=False, partitions=1
            )
            times.append(time.perf_counter() - began)
        reach_s[name] = round(statistics.median(times), 4)
    report = write_results(
        "census",
        {
            "subscribers": n,
            "located_rows": int(census.count.shape[0]),
            "located_cells": int(census.cells.shape[0]),
            "census_bytes": len(raws),
            "build_and_encode_s": [round(b, 3) for b in builds],
            "in_thread_s": [round(t, 3) for t, _ in stalls],
            "event_loop_worst_gap_ms": [round(w * 1000, 1) for _, w in stalls],
            "merge_10k_updates_s": {"columns_private": round(merges[False], 4)},
            "merge_10k_updates_after_census_s": round(merges[True], 4),
            "decode_s": round(decode_s, 4),
            "decoded_bytes": int(
                census.ward_counts.nbytes
                + census.cells.nbytes
                + census.runs.nbytes
                + census.ward.nbytes
                + census.kind.nbytes
                + census.count.nbytes
            ),
            "reach_s": reach_s,
        },
    )
    print(report)
    return report


if __name__ == "__main__":
    main()
