"""Delivery benchmark: deliveries/s of one delivery worker against a local provider.

Issue 19, item 6. ``N`` send tasks are written to a send topic beforehand; then one delivery
worker (:func:`streams.delivery.deliver`, in a process of its own) delivers them to a provider
in another process (``benchmarks/delivery_provider.go``: answers after ``--delay-ms`` with a 503
for ``--errors`` of the calls, counts every call itself, can go down on request). Runs:

- ``noop``: the same worker with a channel that answers at once, no HTTP: the baseline (what
  the worker and Kafka do without a provider); the other runs are given as a ratio to it.
- ``http``: the provider answering after 50 ms, 1 % errors (retried through the retry tiers),
  once per ``--batch`` size: bulk calls of that many tasks (``POST /bulk``, a status per
  message) or, for 1, a call per task (``POST /send``).
- ``outage``: the same, with the provider down (nothing listens, every connection cut) for
  ``--down-s`` seconds once a third of the tasks were delivered: every task must end delivered.

Figures, each counted from outside the worker: deliveries/s by receipt append time (the
receipts topic is created with ``LogAppendTime``, so each receipt carries the broker's clock;
first to last final receipt, read back with librdkafka read_committed, as
:mod:`benchmarks.brokerclock` counts tasks) and by the provider's own count of 200 answers
(first to last). Exactness: every task has exactly one final receipt, ``delivered``, and the
provider answered 200 for every idempotency key; repeats (a second 200 for a key, e.g. a call
cut by the outage after the provider had counted it) are reported, never hidden.

    python -m benchmarks.delivery [--tasks 200000] [--in-flight 1000] [--batch 100,1]

Uses ``LOA_BOOTSTRAP_SERVERS`` or ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts the dev
broker. Writes ``benchmarks/results/delivery.json`` (``--out``). Needs ``go`` to build the
provider (cached under ``~/.cache/loa/tools``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.brokerclock import LOG_APPEND, client_config, create_log_append_topics
from benchmarks.brokerclock import delete_topics as delete_prefixed
from benchmarks.common import RESULTS, bench_broker, tagged, write_results
from benchmarks.harness import proc_stat
from streams.delivery.policy import Outcome
from streams.kafkaio.clients import topic_specs
from streams.settings.model import Settings

PROVIDER_SOURCE = Path(__file__).resolve().parent / "delivery_provider.go"
RUNS = ("noop", "http", "outage")
#: Where Go's official tarball installs when it is not on PATH
_GO = ("/usr/local/go/bin/go",)
PRIORITY = "extreme"
CHANNEL = "sms"
ALERT_ID = "bench.loa/DELIVERY"


def log(msg: str) -> None:
    print(f"[delivery bench] {msg}", file=sys.stderr, flush=True)


# -- the provider -------------------------------------------------------------------------------


def provider_binary() -> Path:
    """The Go provider, built once per source version under ``LOA_TOOLS_CACHE``
    (``~/.cache/loa/tools``)."""
    digest = hashlib.sha256(PROVIDER_SOURCE.read_bytes()).hexdigest()[:12]
    # the same cache as deploy/grafana/lint/install.sh's binaries
    cache = Path(os.environ.get("LOA_TOOLS_CACHE") or Path.home() / ".cache/loa/tools")
    binary = cache / f"delivery-provider-{digest}"
    if binary.exists():
        return binary
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise SystemExit("the delivery benchmark needs Go to build its provider (go not found)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    subprocess.run([go, "build", "-o", str(partial), str(PROVIDER_SOURCE)], check=True)
    partial.rename(binary)
    return binary


@dataclass
class Provider:
    """The Go provider process: ``url`` to send to, ``stats()`` and ``down()`` on its control
    port."""

    delay_ms: float
    errors: float
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    control: str = ""

    def __enter__(self) -> Provider:
        self.proc = subprocess.Popen(
            [
                str(provider_binary()),
                f"-delay={self.delay_ms}ms",
                f"-errors={self.errors}",
            ],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 3 or line[0] != "listening":
            raise RuntimeError(f"provider did not start: {line}")
        self.url = f"http://127.0.0.1:{line[1]}"
        self.control = f"http://127.0.0.1:{line[2]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def url_for(self, batch: int) -> str:
        """One task per POST at ``/send``; the bulk form at ``/bulk``."""
        return f"{self.url}/{'send' if batch == 1 else 'bulk'}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.control}/stats", timeout=10) as answer:
            doc: dict[str, Any] = json.loads(answer.read())
        return doc

    def down(self, seconds: float) -> None:
        request = urllib.request.Request(f"{self.control}/down?seconds={seconds:g}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def cpu_s(self) -> float:
        return proc_stat(self.proc.pid)[0] if self.proc is not None else 0.0


class NoopChannel:
    """The baseline: every call delivered at once, no I/O (``batch`` tasks per call, as the
    http runs it is compared with)."""

    name = "noop"

    def __init__(self, batch: int = 1) -> None:
        self.batch = batch

    async def send(self, task: dict[str, Any]) -> Outcome:
        return Outcome.delivered()

    async def send_many(self, tasks: Sequence[dict[str, Any]]) -> list[Outcome]:
        return [Outcome.delivered()] * len(tasks)

    async def close(self) -> None:
        return None


# -- topics and tasks ---------------------------------------------------------------------------


def create_topics(settings: Settings) -> None:
    """Every topic the worker uses, stamped by the broker (LogAppendTime)."""
    for spec in topic_specs(settings):
        configs = {**(spec.topic_configs or {}), **LOG_APPEND}
        create_log_append_topics(settings, {spec.name: spec.num_partitions}, configs)


def task(recipient: int) -> dict[str, Any]:
    return {
        "alert_id": ALERT_ID,
        "version": 1,
        "kind": "alert",
        "priority": PRIORITY,
        "recipient_id": recipient,
        "channel": CHANNEL,
        "language": "vi",
        "idempotency_key": f"{ALERT_ID}:1:{recipient}",
        "expires": int(time.time()) + 3600,
    }


def write_tasks(settings: Settings, n: int) -> None:
    """``n`` send tasks, keyed and partitioned by recipient as the fan-out writes them."""
    producer = Producer(
        {
            **client_config(settings),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    topic = settings.sends_topic(PRIORITY)
    for recipient in range(n):
        while True:
            try:
                producer.produce(
                    topic,
                    orjson.dumps(task(recipient)),
                    key=b"%d" % recipient,
                    partition=recipient % settings.partitions,
                )
                break
            except BufferError:
                producer.poll(0.1)
        if recipient % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("send tasks not all written")


@dataclass
class ReceiptCount:
    """Final and retrying receipts of the run, read_committed, by the broker's clock."""

    delivered: int = 0
    failed: int = 0
    retrying: int = 0
    distinct_delivered: int = 0
    duplicate_final: int = 0
    first_ms: int = 0
    last_ms: int = 0
    failed_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return max(self.last_ms - self.first_ms, 1) / 1000

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retrying": self.retrying,
            "distinct_delivered": self.distinct_delivered,
            "duplicate_final": self.duplicate_final,
            "failed_reasons": self.failed_reasons,
            "seconds": self.seconds,
            "per_s": self.per_s,
        }


def count_receipts(settings: Settings, timeout_s: float = 120.0) -> ReceiptCount:
    """Read the receipts topic to its end with librdkafka, read_committed."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"loa-bench-receipts-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    count = ReceiptCount(first_ms=2**62)
    finals: dict[str, int] = {}
    delivered: set[str] = set()
    try:
        topic = settings.receipts_topic
        metadata = consumer.list_topics(topic, timeout=30)
        remaining: dict[int, int] = {}
        tps = []
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                remaining[p] = high
                tps.append(TopicPartition(topic, p, low))
        consumer.assign(tps)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=50_000, timeout=0.5):
                if msg.error():
                    continue
                doc = orjson.loads(msg.value() or b"{}")
                outcome = doc["outcome"]
                if outcome == "retrying":
                    count.retrying += 1
                else:
                    key = str(doc["idempotency_key"])
                    finals[key] = finals.get(key, 0) + 1
                    _, ts = msg.timestamp()
                    count.first_ms, count.last_ms = min(count.first_ms, ts), max(count.last_ms, ts)
                    if outcome == "delivered":
                        count.delivered += 1
                        delivered.add(key)
                    else:
                        count.failed += 1
                        reason = str(doc.get("reason"))
                        count.failed_reasons[reason] = count.failed_reasons.get(reason, 0) + 1
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if offset + 1 >= remaining.get(partition, 2**62):
                    del remaining[partition]
            for p in list(remaining):  # a tail of transaction markers ends a partition early
                if consumer.position([TopicPartition(topic, p)])[0].offset >= remaining[p]:
                    del remaining[p]
        if remaining:
            raise RuntimeError(f"receipts not read to their end: partitions {sorted(remaining)}")
    finally:
        consumer.close()
    count.distinct_delivered = len(delivered)
    count.duplicate_final = sum(n - 1 for n in finals.values())
    return count


# -- the worker process -------------------------------------------------------------------------


async def _worker(spec: dict[str, Any]) -> None:
    from streams.delivery import HttpChannel, deliver

    settings: Settings = spec["settings"]
    batch = spec["batch"]
    channel: Any = NoopChannel(batch)
    if spec["url"] is not None:
        channel = HttpChannel(
            spec["url"], timeout_s=10.0, max_connections=spec["connections"], batch=batch
        )
    started = time.perf_counter()
    try:
        stats = await deliver(
            settings,
            provider=channel,
            channel=CHANNEL,
            priorities=(PRIORITY,),
            max_tasks=spec["tasks"],
            concurrency=spec["in_flight"],
            idle_exit_s=spec["idle_exit_s"],
        )
    finally:
        await channel.close()
    Path(spec["result"]).write_bytes(  # noqa: ASYNC240 (once, after the run)
        orjson.dumps(
            {
                "delivered": stats.delivered,
                "failed": stats.failed,
                "retries": stats.retries,
                "duplicates": stats.duplicates,
                "wall_s": time.perf_counter() - started,
                "cpu_s": time.process_time(),
            }
        )
    )


def worker_main(spec_path: str) -> None:
    """``python -m benchmarks.delivery --worker SPEC``: one delivery worker, then exit."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    spec = pickle.loads(Path(spec_path).read_bytes())
    asyncio.run(_worker(spec))


# -- one run ------------------------------------------------------------------------------------


def run_one(
    base: Settings, name: str, args: argparse.Namespace, workdir: Path, batch: int = 1
) -> dict[str, Any]:
    settings = tagged(base, f"loabench-deliv-{name}")
    log(f"{name}: topics {settings.topic_prefix}, writing {args.tasks:,} tasks")
    create_topics(settings)
    write_tasks(settings, args.tasks)
    provider = Provider(args.delay_ms, args.errors) if name != "noop" else None
    result: dict[str, Any] = {"run": name, "tasks": args.tasks, "batch": batch}
    with provider if provider is not None else contextlib.nullcontext():
        spec = {
            "settings": settings,
            "url": provider.url_for(batch) if provider is not None else None,
            "connections": args.in_flight,
            "batch": batch,
            "in_flight": args.in_flight,
            "tasks": args.tasks,
            "idle_exit_s": None,
            "result": str(workdir / f"{name}-{batch}.json"),
        }
        spec_path = workdir / f"{name}-{batch}.spec"
        spec_path.write_bytes(pickle.dumps(spec))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.delivery", "--worker", str(spec_path)], env=env
        )
        outage: dict[str, Any] | None = None
        deadline = time.monotonic() + args.timeout_s
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the worker did not finish in {args.timeout_s} s")
                time.sleep(0.2)
                down_now = name == "outage" and outage is None and provider is not None
                if down_now and provider is not None and provider.stats()["ok"] >= args.tasks // 3:
                    log(f"outage: provider down for {args.down_s:g} s")
                    provider.down(args.down_s)
                    outage = {"down_s": args.down_s, "at_delivered": provider.stats()["ok"]}
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        if proc.returncode != 0:  # a figure in itself (e.g. fenced: its loop was starved)
            result["error"] = f"the worker exited {proc.returncode} (its log is above)"
            log(f"{name}: {result['error']}")
            if not args.keep_topics:
                delete_prefixed(settings, settings.topic_prefix)
            return result
        worker = orjson.loads(Path(spec["result"]).read_bytes())
        result["worker"] = worker
        if provider is not None:
            stats = provider.stats()
            seconds = max(stats["last_ok_ns"] - stats["first_ok_ns"], 1) / 1e9
            result["provider"] = {
                "requests": stats["requests"],
                "calls": stats["calls"],
                "ok": stats["ok"],
                "errors": stats["errors"],
                "distinct_delivered": stats["distinct_delivered"],
                "repeats": stats["repeats"],
                "seconds": seconds,
                "per_s": stats["ok"] / seconds,
                "peak_per_s": max(stats["per_second"].values(), default=0),
                "cpu_s": provider.cpu_s(),
            }
            if outage is not None:
                back_ns = stats["down_to_ns"]
                outage["recovered_s"] = max(stats["last_ok_ns"] - back_ns, 0) / 1e9
                result["outage"] = outage
    receipts = count_receipts(settings)
    result["receipts"] = receipts.as_json()
    result["exact"] = (
        receipts.delivered == args.tasks
        and receipts.failed == 0
        and receipts.duplicate_final == 0
        and receipts.distinct_delivered == args.tasks
        and (provider is None or result["provider"]["distinct_delivered"] == args.tasks)
    )
    if not args.keep_topics:
        delete_prefixed(settings, settings.topic_prefix)
    log(
        f"{name}: {receipts.per_s:,.0f} deliveries/s by receipt append time"
        + (f", {result['provider']['per_s']:,.0f}/s by the provider" if provider else "")
        + f", exact={result['exact']}"
    )
    return result


def table(report: dict[str, Any]) -> str:
    lines = [
        f"delivery benchmark: {report['settings']['tasks']:,} tasks, one worker, "
        f"{report['settings']['in_flight']} tasks in flight, provider "
        f"{report['settings']['delay_ms']:g} ms, {report['settings']['errors']:.0%} errors",
        f"{'run':<14} {'receipts/s':>11} {'provider/s':>11} {'vs noop':>8} {'retrying':>9} "
        f"{'repeats':>8} {'worker cpu':>10} exact",
    ]
    for run in report["runs"]:
        label = f"{run['run']}/batch {run.get('batch', 1)}"
        if "error" in run:
            lines.append(f"{label:<14} {run['error']}")
            continue
        provider = run.get("provider") or {}
        lines.append(
            f"{label:<14} "
            f"{run['receipts']['per_s']:>11,.0f} "
            f"{provider.get('per_s', 0):>11,.0f} {run.get('vs_noop', 1.0):>8.2f} "
            f"{run['receipts']['retrying']:>9,} {provider.get('repeats', 0):>8,} "
            f"{run['worker'].get('cpu_s', 0):>10.1f} {run['exact']}"
        )
        if "outage" in run:
            o = run["outage"]
            lines.append(
                f"{'':15}provider down {o['down_s']:g} s after {o['at_delivered']:,} delivered;"
                f" last delivery {o['recovered_s']:.1f} s after it was back"
            )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap and not os.environ.get("LOA_BOOTSTRAP_SERVERS"):
        os.environ["LOA_BOOTSTRAP_SERVERS"] = bootstrap
    runs = args.runs.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    if not all(1 <= b <= 1000 for b in batches):
        raise SystemExit(f"--batch {args.batch}: tasks per call must be 1..1000")
    unknown = set(runs) - set(RUNS)
    if unknown:
        raise SystemExit(f"unknown runs {sorted(unknown)}; known: {', '.join(RUNS)}")
    if {"http", "outage"} & set(runs):
        provider_binary()  # build before the clock starts
    with (
        tempfile.TemporaryDirectory(prefix="loa-dbench-") as tmp,
        bench_broker(
            args.partitions, int(os.environ.get("LOA_KAFKA_PORT", "19992")), Path(tmp)
        ) as base,
    ):
        base = replace(base, partitions=args.partitions)
        # noop and outage with the first batch size; http with each
        results = [
            run_one(base, name, args, Path(tmp), batch)
            for name in runs
            for batch in (batches if name == "http" else batches[:1])
        ]
    noop = next((r for r in results if r["run"] == "noop"), None)
    for r in results:
        if noop is not None and "receipts" in r:
            r["vs_noop"] = r["receipts"]["per_s"] / noop["receipts"]["per_s"]
    payload = {
        "command": "python -m benchmarks.delivery " + " ".join(args.argv),
        "settings": {
            "tasks": args.tasks,
            "in_flight": args.in_flight,
            "delay_ms": args.delay_ms,
            "errors": args.errors,
            "down_s": args.down_s,
            "partitions": args.partitions,
            "batch": batches,
        },
        "load_avg": os.getloadavg(),
        "runs": results,
    }
    out = Path(args.out)
    if out == RESULTS:
        return write_results("delivery", payload)
    out.mkdir(parents=True, exist_ok=True)
    (out / "delivery.json").write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def problems(report: dict[str, Any]) -> list[str]:
    """What makes a run unusable: a figure missing or a count not exact (never a rate)."""
    found = []
    for run in report["runs"]:
        if "error" in run:
            found.append(f"{run['run']}/batch {run.get('batch')}: {run['error']}")
            continue
        if not run["exact"]:
            found.append(f"{run['run']}: not exact: {run['receipts']} {run.get('provider')}")
        if run["receipts"]["per_s"] <= 0:
            found.append(f"{run['run']}: no receipt rate")
        if run["run"] != "noop" and not run.get("provider", {}).get("per_s"):
            found.append(f"{run['run']}: no provider rate")
        if run["run"] == "outage" and "outage" not in run:
            found.append("outage: the provider never went down")
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.delivery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    num = lambda s: int(float(s))  # noqa: E731
    p.add_argument("--tasks", type=num, default=200_000, help="send tasks per run (200000)")
    p.add_argument("--in-flight", type=int, default=1000, help="calls in flight (1000)")
    p.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time (50)")
    p.add_argument("--errors", type=float, default=0.01, help="503 fraction (0.01)")
    p.add_argument("--down-s", type=float, default=30.0, help="outage run: seconds down (30)")
    p.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"of {','.join(RUNS)} (all)")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="per run (1800)")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    p.add_argument(
        "--batch",
        default="100,1",
        help="tasks per provider call (LOA_DELIVERY_HTTP_BATCH), comma-separated: the http run"
        " once with each, noop and outage with the first (100,1)",
    )
    p.add_argument("--keep-topics", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def cli(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    args.argv = sys.argv[1:] if argv is None else argv
    report = main(args)
    print(table(report))
    found = problems(report)
    for problem in found:
        print(f"delivery bench: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(cli())
