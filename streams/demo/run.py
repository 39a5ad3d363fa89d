"""``loa demo``: the whole flow on one machine, then everything it started is stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streams.demo.console import DEMO_AGENCY, start_console
from streams.demo.localrun import WorkerProcess, start_broker, stop_broker
from streams.demo.oracle import Expected, Rows, expected_audience
from streams.directory.load import load_synthetic
from streams.directory.synthetic import synthetic_subscribers
from streams.ingest.agency_service import ensure_local_key
from streams.ingest.signatures import signature_headers
from streams.kafkaio.clients import create_topics, make_producer
from streams.progress import ProgressBar
from streams.receipts.observe import wait_decision, watch_progress
from streams.receipts.status import AlertStatus, StatusReader
from streams.records import CHANNELS, Progress
from streams.regions import registry
from streams.settings.model import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "typhoon.json"


def run_demo(settings: Settings, *, subscribers: int, seed: int, alert_file: Path | None) -> int:
    """The demo from start to summary; the process exit code (0: every task as expected).

    Why this long: it is the demo's script, read top to bottom (broker, worker, delivery
    worker, directory, alert, wait, summary, stop), with its cleanup in one ``finally``."""
    # aiokafka warns about leader elections on topics it has just created: noise in a demo
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    regions = registry()
    started_broker = start_broker(settings)
    log_path = Path(".loa") / "demo-worker.log"
    worker = WorkerProcess(settings, log_path).start()
    # at a terminal the console stays up until Ctrl-C, and deliveries with it; in CI both end
    interactive = sys.stdin.isatty()
    # the reference delivery worker: logs each task and writes a receipt
    delivery = WorkerProcess(
        settings,
        Path(".loa") / "demo-deliver.log",
        command=("deliver", "--provider", "log", *(() if interactive else ("--idle-exit", "30"))),
        LOA_LOG_LEVEL="WARNING",
    ).start()
    console: WorkerProcess | None = None
    print(f"worker and delivery worker started (logs: {log_path}, .loa/demo-deliver.log)")
    try:
        doc = orjson.loads((alert_file or SAMPLE).read_bytes())
        doc["identifier"] = f"{doc['identifier']}-{int(time.time())}"
        raw = orjson.dumps(doc)

        async def run() -> tuple[str, dict[int, Progress], float, AlertStatus | None]:
            await create_topics(settings)
            # the sample's agency, with a key made for this machine (kept in .loa/keys)
            key = await ensure_local_key(
                settings,
                doc["sender"],
                Path(".loa") / "keys",
                agencies_path=Path(settings.resolved_agencies_dir),
            )
            bar = ProgressBar("directory", subscribers)
            t0 = time.monotonic()
            await load_synthetic(settings, subscribers, seed, regions, on_progress=bar.update)
            print(f"loaded {subscribers:,} subscribers in {time.monotonic() - t0:.1f} s")
            producer = make_producer(settings)
            await producer.start()
            try:
                meta = await producer.send_and_wait(
                    settings.inbound_topic, raw, headers=list(signature_headers(key, raw))
                )
            finally:
                await producer.stop()
            published = time.time()
            outcome, record = await wait_decision(
                settings, doc["sender"], doc["identifier"], offset=meta.offset
            )
            if outcome != "accepted":
                print(f"{outcome}: {record['code']} {record['message']}")
                return outcome, {}, published, None
            print(f"accepted {record['alert_id']} priority={record['priority']}")
            # The directory is synthetic and deterministic, so the audience size is known
            # before the workers report it: the bar has a fixed total from the start.
            # no rate on this bar: it would be this watcher's; the summary gives the fan-out's
            # own, from its commit times
            fan = ProgressBar(
                "fan-out  ", expected_audience_count(doc, subscribers, seed), rate=False
            )

            def update(latest: dict[int, Progress]) -> None:
                fan.update(sum(p.emitted for p in latest.values()))

            result = await watch_progress(settings, record["alert_id"], on_update=update)
            return outcome, result, published, await _receipts(settings, record["alert_id"])

        outcome, result, published, status = asyncio.run(run())
        if outcome != "accepted":
            return 1
        _summary(doc, result, published, subscribers, seed, status)
        console = _console(settings, interactive)
        return 0
    finally:
        if console is not None:
            console.stop()
        delivery.stop()
        worker.stop()
        print("worker and delivery worker stopped")
        if started_broker:
            stop_broker(settings)


def _console(settings: Settings, interactive: bool) -> WorkerProcess:
    """Start the console with the demo agency's users; at a terminal, keep it until Ctrl-C."""
    console, url, passwords = start_console(settings)
    print()
    print("=== Loa console ===")
    print(f"console                   {url}  (agency {DEMO_AGENCY})")
    for name, password in passwords.items():
        print(f"user                      {name:<9} password {password}")
    print("log                       .loa/demo-console.log")
    if interactive:
        print("the console, worker and delivery worker run until Ctrl-C")
        try:
            while console.alive:
                time.sleep(1)
        except KeyboardInterrupt:
            print()
    return console


def _audience(
    doc: dict[str, Any], subscribers: int, seed: int
) -> tuple[Expected, npt.NDArray[np.bool_]]:
    """The alert's audience by the independent oracle (``streams/demo/oracle.py``), which shares no
    code with the fan-out: the demo's "expected" is a check, not an echo. Also the row mask of
    the sure part over the synthetic directory."""
    regions = registry()
    subs = synthetic_subscribers(subscribers, seed, regions)
    expected = expected_audience(doc, Rows.from_batch(subs, regions.ward_codes))
    sure = np.fromiter(expected.sure, dtype=np.uint64, count=len(expected.sure))
    return expected, np.isin(subs.ids, sure)


def expected_audience_count(doc: dict[str, Any], subscribers: int, seed: int) -> int:
    return len(_audience(doc, subscribers, seed)[0].sure)


async def _receipts(settings: Settings, alert_id: str) -> AlertStatus | None:
    """Wait (bounded) until every emitted task has a receipt; the last status seen."""
    status: AlertStatus | None = None
    deadline = time.monotonic() + 60
    async with StatusReader(settings, alert_id) as reader:
        while time.monotonic() < deadline:
            await reader.catch_up()
            status = reader.status(1)
            if status.done:
                break
            await asyncio.sleep(0.5)
    return status


def _summary(
    doc: dict[str, Any],
    result: dict[int, Progress],
    published: float,
    n: int,
    seed: int,
    status: AlertStatus | None,
) -> None:
    regions = registry()
    targeted = sum(p.targeted for p in result.values())
    emitted = sum(p.emitted for p in result.values())
    first = min(p.started_at for p in result.values())
    last = max(p.finished_at or 0.0 for p in result.values())
    fanout_s = last - first
    subs = synthetic_subscribers(n, seed, regions)
    expected, hit = _audience(doc, n, seed)
    by_province = Counter(
        regions.province_names[p] for p in regions.ward_province[subs.ward[hit]].tolist()
    )
    by_channel = np.bincount(subs.channel[hit], minlength=len(CHANNELS))
    print()
    print("=== Loa demo summary ===")
    print(f"directory                 {n:,} synthetic subscribers (seed {seed})")
    edge = f", ± {len(expected.maybe):,} at shape edges" if expected.maybe else ""
    print(f"recipients targeted       {targeted:,} (expected {int(hit.sum()):,}{edge})")
    print(f"tasks emitted             {emitted:,}")
    print(
        f"fan-out seconds           {fanout_s:.2f}  (publish to last task: {last - published:.2f})"
    )
    print(
        f"tasks/s                   {emitted / max(fanout_s, 1e-9):,.0f} over the fan-out"
        f" ({emitted / max(last - published, 1e-9):,.0f} from publish to last task)"
    )
    print(
        "by province               " + ", ".join(f"{k} {v:,}" for k, v in by_province.most_common())
    )
    print(
        "by channel                "
        + ", ".join(f"{c} {int(v):,}" for c, v in zip(CHANNELS, by_channel, strict=True))
    )
    if status is not None:
        print(
            f"receipts                  delivered {status.delivered:,}, failed {status.failed:,}"
            f" (loa deliver --provider log; `loa status {status.alert_id}`)"
        )
