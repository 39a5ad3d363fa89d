"""Console preview benchmark: a national alert's preview over N subscribers (issue 23: < 1 s).

In-process, no broker. N synthetic subscribers are split over ``--partitions`` directory
partitions and each partition's census is built as a worker builds it; then the console's
preview (:func:`streams.console.audience.census_audience`, what ``POST /api/drafts/{id}/preview``
runs after ingest's decision) counts a national alert (``VN``), a province (``VN-51``) and a
30 km circle, and the answer's JSON size is measured (the map cells are aggregated to H3
resolution 5).

    python -m benchmarks.console_preview [--subscribers 10000000] [--partitions 8] [--repeat 5]

Writes benchmarks/results/console_preview.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import h3
import numpy as np
import orjson

from benchmarks.common import write_results
from streams.console.audience import census_audience
from streams.directory.census import Census, build_census
from streams.directory.index import DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.regions import circle_cells, registry

REGIONS = registry()


def _censuses(n: int, partitions: int) -> dict[int, Census]:
    out: dict[int, Census] = {}
    per = n // partitions
    for p in range(partitions):
        index = DirectoryPartition()
        index.apply(synthetic_subscribers(per, 1 + p, REGIONS, id_base=p * per))
        out[p] = build_census(
            index.columns(), partition=p, offset=0, made_at=time.time(), regions=REGIONS,
            h3_resolution=7,
        )  # fmt: skip
    return out


def _time(censuses: dict[int, Census], repeat: int, **target: Any) -> dict[str, Any]:
    times, answer = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        answer = census_audience(
            censuses, REGIONS, test_only=False, partitions=len(censuses), **target
        )
        times.append(time.perf_counter() - started)
    return {
        "median_s": round(statistics.median(times), 4),
        "max_s": round(max(times), 4),
        "reached": answer["reached"],
        "cells": len(answer["cells"]),
        "answer_bytes": len(orjson.dumps(answer)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=float, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = int(args.subscribers)
    started = time.perf_counter()
    censuses = _censuses(n, args.partitions)
    built = time.perf_counter() - started
    circle = h3.compact_cells(circle_cells(15.12, 108.8, 30.0, 7))
    results = {
        "national": _time(censuses, args.repeat, targets=["VN"], cells=[]),
        "province": _time(censuses, args.repeat, targets=["VN-51"], cells=[]),
        "circle_30km": _time(censuses, args.repeat, targets=[], cells=list(circle)),
    }
    located = sum(int(np.sum(c.count)) for c in censuses.values())
    report = write_results(
        "console_preview",
        {
            "subscribers": n,
            "partitions": args.partitions,
            "located": located,
            "censuses_built_s": round(built, 2),
            "preview": results,
        },
    )
    for name, r in results.items():
        print(
            f"{name:12} {r['median_s'] * 1000:7.1f} ms median ({r['max_s'] * 1000:.1f} max), "
            f"reached {r['reached']:,}, {r['cells']} cells, {r['answer_bytes']:,} bytes"
        )
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
