"""The fan-out worker's CPU per send task for turning an audience into finished record batches,
in-process (no Kafka): the path the emitter uses (``TaskEncoder.columns`` + ``template_batches``)
against the one it used before 2026-12-06 (``TaskEncoder.matrices`` + ``prebuilt_batches``, both
still in the code), in the same run, with the ratio.

Both paths must give the same batches byte for byte (checked here before timing, timestamps
and CRC aside); ``tests/unit/test_wire_recordbatch.py`` and ``tests/unit/test_task_encoding.py``
check them against ``build_records`` and orjson. What this leaves out: the producer's request
encoding, the socket write and the transaction round trips (see ``benchmarks.first_alert
--profile``).

``python -m benchmarks.encode`` prints the figures and writes ``benchmarks/results/encode.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streams.directory.index import FALLBACKS, Selection
from streams.fanout.encode import TaskEncoder
from streams.kafkaio.rawkafka import PrebuiltBatch, prebuilt_batches, template_batches
from streams.records import CHANNELS, LANGUAGES, FanoutOrder, Priority, TaskKind

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 65_536  # LOA_FANOUT_CHUNK's default
BATCH_BYTES = 1_000_000  # LOA_EMIT_BATCH_BYTES's default


def _audience(n: int) -> Selection:
    rng = np.random.default_rng(22)
    ids = np.sort(rng.choice(10**9, n, replace=False).astype(np.uint64)) + 84_900_000_000
    return Selection(
        ids=ids,
        channel=rng.integers(0, len(CHANNELS), n).astype(np.uint8),
        language=rng.integers(0, len(LANGUAGES), n).astype(np.uint8),
        fallback=rng.integers(0, len(FALLBACKS), n).astype(np.uint8),
    )


def _finished(batch: PrebuiltBatch) -> bytes:
    batch._set_producer_state(1, 0, 0)  # what the producer's sender does before building
    return bytes(batch._build())


def _paths(
    encoder: TaskEncoder, audience: Selection, kinds: np.ndarray[Any, Any]
) -> dict[str, Callable[[], list[bytes]]]:
    n = len(audience)

    def before() -> list[bytes]:
        return [
            _finished(b)
            for a in range(0, n, CHUNK)
            for keys, values in encoder.matrices(audience, a, min(n, a + CHUNK), kinds)
            for b in prebuilt_batches(keys, values, BATCH_BYTES, transactional=True)
        ]

    def now() -> list[bytes]:
        return [
            _finished(b)
            for a in range(0, n, CHUNK)
            for keys, slots, layout in encoder.columns(audience, a, min(n, a + CHUNK), kinds)
            for b in template_batches(
                keys, slots, layout.template, layout.slots, BATCH_BYTES, transactional=True
            )
        ]

    return {"matrices + prebuilt_batches (before)": before, "columns + template_batches": now}


def _comparable(batches: list[bytes]) -> list[bytes]:
    # the CRC (bytes 17-20) and the two timestamps (27-42) differ between two builds
    return [b[:17] + b[21:27] + b[43:] for b in batches]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.encode", description=__doc__)
    p.add_argument("--tasks", type=lambda s: int(float(s)), default=1_250_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "encode.json"))
    args = p.parse_args(argv)
    order = FanoutOrder(
        alert_id="nchmf.gov.vn/B982c0da2b2",
        version=1,
        kind=TaskKind.ALERT,
        priority=Priority.EXTREME,
        partition=0,
        targets=("VN",),
        test_only=False,
        expires="2026-12-07T00:00:00+07:00",
    )
    audience = _audience(args.tasks)
    kinds = np.zeros(args.tasks, dtype=np.uint8)
    paths = _paths(TaskEncoder(order), audience, kinds)
    first, second = (_comparable(f()) for f in paths.values())  # also warms every cache
    if first != second:
        raise SystemExit("the two paths built different batches")
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, best of each: the machine is shared
        for name, run in paths.items():
            started = time.process_time()
            run()
            spent = time.process_time() - started
            best[name] = min(best.get(name, spent), spent)
    names = list(paths)
    report = {
        "benchmark": "encode",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "tasks": args.tasks,
        "us_per_task": {k: round(v / args.tasks * 1e6, 4) for k, v in best.items()},
        "ratio_now_to_before": round(best[names[1]] / best[names[0]], 3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, us in report["us_per_task"].items():
        print(f"{name:<40} {us:.3f} us CPU per task")
    print(f"now / before: {report['ratio_now_to_before']:.2f} (best of {args.repeats}, same run)")
    return report


if __name__ == "__main__":
    main()
