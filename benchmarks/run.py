"""``loa bench``: Loa's fan-out measured from outside, next to its peers, in one run.

Sections (all by default; ``--only`` picks some):

- ``fanout``: for each ``--sizes`` directory and each ``--workers`` count, one national alert
  through real worker processes, with every rule on (lineage dedup, transactions; with one
  worker also throttle on and a routine alert under frequency caps). Counted by the broker:
  tasks, distinct recipients, duplicates, first/last LogAppendTime. Also directory load rate,
  restore time, worker memory per subscriber and CPU seconds per worker.
- ``peers``: Kafka's Java producer, confluent-kafka, aiokafka's batch API and a naive Faust
  agent, same broker, same record size, counted the same way; Loa's ratio to the best.
- ``latency``: publish -> first task and -> last task over ``--latency-alerts`` one-ward
  extreme alerts on an idle worker, and extreme one-ward alerts published while a routine
  national fan-out runs (preemption).
- ``sustained``: back-to-back national alerts until ``--total`` tasks, against send topics with
  ``retention.bytes``; throughput over time and broker disk.

Uses ``LOA_BOOTSTRAP_SERVERS`` (and Loa's other ``LOA_*`` client settings) when set, else
starts the dev broker on ``LOA_KAFKA_PORT`` (default 19992) and stops it after. Bench topics are
deleted afterwards (``--keep-topics`` keeps them). Writes ``<out>/bench.json`` and plots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks import report
from benchmarks.brokerclock import Marks, delete_topics, watermarks
from benchmarks.harness import (
    ALERT_SENDER,
    RUN_PREFIX,
    SEED,
    Deployment,
    Published,
    own_figures,
    proc_stat,
    spent_by_thread,
    thread_cpu,
    wait_for,
    ward_counts,
)
from benchmarks.peers import PEERS, run_peer
from streams.demo.localrun import start_broker, stop_broker
from streams.records import Priority
from streams.regions import registry
from streams.settings.load import load_settings
from streams.settings.model import Settings

SECTIONS = ("fanout", "peers", "latency", "sustained")
#: the first national alert on a worker just ready (as a user starts one), before "loa"
FIRST = "loa first"
RUNS = (FIRST, "loa", "loa+throttle", "loa+caps")
#: What a bench worker gets that ``loa worker`` started by a user with the defaults does not
WORKER_START = (
    "same command (python -m streams worker) and default settings, waited for on /ready;"
    " differs only in its topic prefix and app id (a fresh set per run), a static"
    " LOA_INSTANCE_ID per worker, its own LOA_DATA_DIR and LOA_METRICS_PORT, and send-task"
    " and inbound topics stamped with LogAppendTime (the broker's clock, for the figures)"
)
THROTTLE_RATE = 1e9  # tasks/s per channel: bookkeeping on, never binding


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _bar(label: str, total: int) -> Any:
    from streams.progress import ProgressBar

    return ProgressBar(label, total)


#: Broker CPU (cores) below which it counts as idle, and the longest wait for it.
SETTLE_CORES = 0.15
SETTLE_MAX_S = 90.0


def settle(broker_dir: Path | None, workers: Callable[[], float] = lambda: 0.0) -> float:
    """Start every measured run (Loa's and each peer's) from the same quiet machine: flush the
    page cache's dirty pages (the previous run's gigabytes would otherwise be written back
    during this one) and wait until the broker's and the idle workers' background work is
    done (the log cleaner compacts the freshly loaded directory topic, a restored worker
    writes its directory snapshots: tens of CPU seconds on 2 cores). ``workers``: their CPU
    seconds so far. Returns the seconds waited (bounded by :data:`SETTLE_MAX_S`)."""
    started = time.monotonic()
    os.sync()

    def cpu() -> float:
        # a broker on another machine: only the workers are waited for
        return (_broker_cpu_s(broker_dir) or 0.0) + workers()

    before = cpu()
    while time.monotonic() - started < SETTLE_MAX_S:
        time.sleep(1.0)
        now = cpu()
        if now - before < SETTLE_CORES:
            break
        before = now
    return time.monotonic() - started


#: /proc/vmstat counters of page reclaim: by kswapd in the background, or direct (in the
#: allocating process, e.g. the broker appending to a new segment with the page cache full)
_RECLAIM = ("pgsteal_kswapd", "pgsteal_direct", "allocstall_movable", "allocstall_normal")


def _vmstat() -> dict[str, int]:
    try:
        lines = Path("/proc/vmstat").read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split() for line in lines)
    return {k: int(v) for k, v in pairs if k in _RECLAIM}


def _reclaim(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Page reclaim between two :func:`_vmstat` readings (pages, stalls)."""
    return {k: after[k] - before.get(k, 0) for k in after}


def _cpu_view(dep: Deployment, broker_dir: Path | None) -> dict[str, dict[str, float]]:
    """CPU seconds so far per thread kind of the broker (when local) and of the workers."""
    view: dict[str, dict[str, float]] = {"worker": {}}
    for worker in dep.workers:
        if worker.proc is not None:
            for kind, seconds in thread_cpu(worker.proc.pid).items():
                view["worker"][kind] = view["worker"].get(kind, 0.0) + seconds
    pid = _broker_pid(broker_dir)
    if pid:
        view["broker"] = thread_cpu(pid)
    return view


def _cpu_spent(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], tasks: int
) -> dict[str, Any]:
    """Where the CPU went between two :func:`_cpu_view` readings: per process, seconds,
    microseconds per task and the top thread kinds (the broker's log cleaner, request
    handlers, JIT and GC; the worker's event loop and pools)."""
    spent: dict[str, Any] = {}
    for process, threads in after.items():
        if process not in before:
            continue
        seconds = sum(threads.values()) - sum(before[process].values())
        spent[process] = {
            "cpu_s": seconds,
            "us_per_task": seconds / tasks * 1e6 if tasks else None,
            "threads": spent_by_thread(before[process], threads),
        }
    return spent


def _broker_cpu_s(broker_dir: Path | None) -> float | None:
    """CPU seconds of the local broker so far (None when it is not on this machine)."""
    pid = _broker_pid(broker_dir)
    return proc_stat(pid)[0] if pid else None


def _broker_pid(broker_dir: Path | None) -> int:
    """The local dev broker's process id (0 when it is not on this machine)."""
    try:
        return int((broker_dir / "kafka.pid").read_text().strip()) if broker_dir else 0
    except (OSError, ValueError):
        return 0


async def _national(
    dep: Deployment,
    priority: Priority,
    label: str,
    expected: int | None,
    broker_dir: Path | None = None,
    *,
    settle_first: bool = True,
    reader: Callable[[Deployment, Any], Any] | None = None,
    java_after: bool = False,
) -> dict[str, Any]:
    """Publish one national alert, follow it, and count its tasks on the broker: live by the
    Java reader (``reader``: it shares the CPU with the fan-out), after it by the Java reader
    (``java_after``: nothing runs beside the fan-out; the counted tasks are then deleted), or
    after it by librdkafka. With ``settle_first`` the broker's dirty pages are synced and
    broker and workers idle first."""
    settled_s = (
        await asyncio.to_thread(
            settle, broker_dir, lambda: sum(cpu for cpu, _ in dep.worker_stats())
        )
        if settle_first
        else 0.0
    )
    broker0 = _broker_cpu_s(broker_dir)
    stats0 = dep.worker_stats()
    cpu0 = _cpu_view(dep, broker_dir)
    vm0 = _vmstat()
    since = dep.marks()
    follower = None if reader is None else await asyncio.to_thread(reader, dep, since)
    bar = _bar(f"{label} {dep.n:,}", expected or dep.n)
    published = await dep.publish(("VN",), priority, expected=expected)
    progress = await dep.progress(published, bar=bar)
    stats1 = dep.worker_stats()
    broker1 = _broker_cpu_s(broker_dir)
    cpu = _cpu_spent(cpu0, _cpu_view(dep, broker_dir), expected or dep.n)
    reclaim = _reclaim(vm0, _vmstat())
    own = own_figures(progress)
    if java_after:
        after = await asyncio.to_thread(_java_count, dep, since)
        count = after.alerts[published.alert_id]
        counted_by = "java, after" if after.exact else "java, after: not exact (missed or cut)"
        await asyncio.to_thread(_delete_counted, dep)
    elif follower is None:
        count = dep.count(since)[published.alert_id]
        counted_by = "librdkafka"
    else:
        count = (await asyncio.to_thread(follower.stop))[published.alert_id]
        counted_by = "java" if follower.result.exact else "java, not exact (missed or cut)"
    want = expected if expected is not None else own["emitted"]
    return {
        "label": label,
        "priority": priority.value,
        "subscribers": dep.n,
        "workers": len(dep.workers),
        "broker": count.as_json(),
        "per_s": count.per_s,
        "publish_to_first_task_s": (count.first_ms - published.append_ms) / 1000,
        "publish_to_last_task_s": (count.last_ms - published.append_ms) / 1000,
        "loa_own": own,
        "exact": count.tasks == want == count.distinct
        and count.duplicates == 0
        and getattr(count, "missed", 0) == 0,
        "per_worker": [
            {"cpu_s": c1 - c0, "rss_bytes": r1}
            for (c0, _), (c1, r1) in zip(stats0, stats1, strict=False)
        ],
        # from publish to the progress read-back: a little more than the fan-out itself
        "broker_cpu_s": None if broker0 is None or broker1 is None else broker1 - broker0,
        "settled_s": settled_s,
        "cpu": cpu,
        "reclaim": reclaim,
        "counted_by": counted_by,
    }


async def fanout_section(
    base: Settings,
    sizes: list[int],
    workers: list[int],
    tmp: Path,
    broker_dir: Path | None,
    labels: tuple[str, ...] = RUNS,
    java: bool = False,
    keep_topics: bool = False,
) -> list[dict[str, Any]]:
    """National alerts per directory size and worker count (``RUNS``), each counted after it
    by librdkafka or, with ``java``, by the exact reader (then the counted tasks are deleted
    from the broker, so two 100M alerts, 48 GB, never sit on the disk at once)."""
    runs: list[dict[str, Any]] = []
    for n in sizes:
        dep = Deployment(base, n, tmp)
        await dep.create()
        _say(f"loading {n:,} subscribers")
        load_per_s = await dep.load()
        for count in workers:
            dep.start_workers(count)
            try:
                # as a user's orchestrator starts a worker: /ready, then the first alert at once
                # (no settle, no warm-up alert); then the same alert again on the warm worker
                restore_s = await asyncio.to_thread(dep.wait_ready)
                rss = sum(r for _, r in dep.worker_stats())
                variants = [(Priority.EXTREME, FIRST, n), (Priority.EXTREME, "loa", n)]
                if count == workers[0]:
                    variants += [
                        (Priority.EXTREME, "loa+throttle", n),
                        (Priority.ROUTINE, "loa+caps", None),
                    ]
                variants = [v for v in variants if v[1] in labels]
                for priority, label, expected in variants:
                    if label != FIRST:  # a fresh worker has no limits: nothing to lift
                        await dep.set_throttle(THROTTLE_RATE if label == "loa+throttle" else None)
                    run = await _national(
                        dep,
                        priority,
                        label,
                        expected,
                        broker_dir,
                        settle_first=label != FIRST,
                        java_after=java,
                    )
                    run.update(
                        directory_load_per_s=load_per_s,
                        directory_load_s=dep.load_s,
                        restore_s=restore_s,
                        rss_bytes_after_restore=rss,
                        rss_bytes_per_subscriber=rss / n,
                        partitions=base.partitions,
                    )
                    runs.append(run)
                    _say(
                        f"{label:<13} {n:>11,} subs, {count} worker(s): {run['per_s']:>10,.0f}"
                        f" tasks/s by the broker clock (Loa's own {run['loa_own']['per_s']:,.0f})"
                        f" | exact {run['exact']} | first task"
                        f" {run['publish_to_first_task_s'] * 1000:.0f} ms after publish"
                        f" | pages reclaimed directly / by kswapd:"
                        f" {run['reclaim'].get('pgsteal_direct', 0):,} /"
                        f" {run['reclaim'].get('pgsteal_kswapd', 0):,}"
                    )
            finally:
                dep.stop_workers()
        if not keep_topics:  # this size's directory and tasks are not needed any more
            delete_topics(base, dep.settings.topic_prefix)
    return runs


def record_size(n: int) -> tuple[int, int]:
    """Key and value bytes of a national task for a directory of ``n`` (Loa's encoder)."""
    from streams.directory.index import DirectoryPartition
    from streams.directory.synthetic import synthetic_subscribers
    from streams.fanout.encode import TaskEncoder
    from streams.fanout.plan import select_audience
    from streams.records import FanoutOrder, TaskKind

    regions = registry()
    sample = min(n, 20_000)
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(sample, SEED, regions, id_base=n - sample))
    order = FanoutOrder(
        f"{ALERT_SENDER}/B{'0' * 10}", 1, TaskKind.ALERT, Priority.EXTREME, 0, ("VN",), False
    )
    audience = select_audience(order, index, regions)
    pairs = list(TaskEncoder(order).encode(audience, 0, sample, np.zeros(sample, np.uint8)))
    return (
        round(sum(len(k) for k, _ in pairs) / len(pairs)),
        round(sum(len(v) for _, v in pairs) / len(pairs)),
    )


def peers_section(
    base: Settings,
    n: int,
    faust_n: int,
    names: list[str],
    sizes: tuple[int, int] | None,
    broker_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """``sizes``: key and value bytes of Loa's tasks as read back (else computed). Each peer
    starts from a settled broker, as each Loa run does (:func:`settle`)."""
    key_size, value_size = sizes or record_size(n)
    out = []
    for name in names:
        count = faust_n if name == "faust" else n
        settings = replace(base, topic_prefix=f"{RUN_PREFIX}-peer-{name}")
        settled_s = settle(broker_dir)
        _say(f"peer {name}: {count:,} records of {key_size}+{value_size} bytes")
        result = run_peer(name, settings, count, key_size, value_size)
        result.update(key_bytes=key_size, value_bytes=value_size, settled_s=settled_s)
        out.append(result)
        _say(
            f"peer {name}: {result['per_s']:,.0f} rec/s by the broker clock"
            f" (own {result['own_per_s']:,.0f})"
        )
    return out


def _task_bytes(runs: list[dict[str, Any]]) -> tuple[int, int] | None:
    """Average key and value bytes of the largest national run's tasks, as the broker holds them."""
    if not runs:
        return None
    broker = max(runs, key=lambda r: r["subscribers"])["broker"]
    return round(broker["key_bytes"]), round(broker["value_bytes"])


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.array(values)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)} | {
        "max": float(arr.max()),
        "count": len(values),
    }


async def latency_section(dep: Deployment, alerts: int) -> dict[str, Any]:
    """On ``dep`` with one idle worker: one-ward extreme alerts one at a time, then extreme
    one-ward alerts published while a routine national fan-out runs."""
    regions = registry()
    n = dep.n
    counts = ward_counts(n)
    wards = np.flatnonzero(counts)[:: max(1, int(np.count_nonzero(counts)) // max(alerts, 1))]
    from streams.kafkaio.clients import make_producer

    since = dep.marks()
    producer = make_producer(dep.settings)
    await producer.start()
    small: list[Published] = []
    bar = _bar("small alerts", alerts)
    try:
        for i in range(alerts):
            ward = int(wards[i % len(wards)])
            published = await dep.publish(
                (regions.ward_codes[ward],),
                expected=int(counts[ward]),
                wait=False,
                producer=producer,
            )
            small.append(published)
            # an idle system: the next alert after this one's fan-out finished
            await dep.progress(published, timeout_s=300)
            bar.update(i + 1)
        # preemption: extreme one-ward alerts while a routine national fan-out runs
        routine = await dep.publish(("VN",), Priority.ROUTINE, wait=False, producer=producer)
        before = dep.tasks_on_broker()
        await wait_for(lambda: dep.tasks_on_broker() > before, 300)
        urgent: list[Published] = []
        for i in range(10):
            ward = int(wards[(i * 7) % len(wards)])
            urgent.append(
                await dep.publish(
                    (regions.ward_codes[ward],),
                    expected=int(counts[ward]),
                    wait=False,
                    producer=producer,
                )
            )
            await asyncio.sleep(0.3)
    finally:
        await producer.stop()
    await dep.progress(routine)
    await dep.progress(urgent[-1])
    counted = dep.count(since)

    def measured(alerts_: list[Published]) -> tuple[list[float], list[float], bool]:
        first, last, exact = [], [], True
        for p in alerts_:
            c = counted.get(p.alert_id)
            if c is None:
                exact = False
                continue
            exact &= c.tasks == c.distinct == p.expected and c.duplicates == 0
            first.append((c.first_ms - p.append_ms) / 1000)
            last.append((c.last_ms - p.append_ms) / 1000)
        return first, last, exact

    s_first, s_last, s_exact = measured(small)
    u_first, u_last, u_exact = measured(urgent)
    national = counted[routine.alert_id]
    return {
        "subscribers": n,
        "small_alerts": {
            "first_task_s": _percentiles(s_first),
            "last_task_s": _percentiles(s_last),
            "exact": s_exact,
            "first_samples": s_first,
            "last_samples": s_last,
        },
        "extreme_during_national": {
            "first_task_s": _percentiles(u_first),
            "last_task_s": _percentiles(u_last),
            "exact": u_exact,
            "finished_before_national": sum(
                counted[p.alert_id].last_ms < national.last_ms for p in urgent
            ),
            "first_samples": u_first,
            "last_samples": u_last,
            "national": national.as_json() | {"publish_ms": routine.append_ms},
        },
    }


def _disk_bytes(path: Path | None) -> int | None:
    if path is None or not path.exists():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def sustained_section(
    dep: Deployment, total: int, broker_dir: Path | None, reader: Any = None
) -> dict[str, Any]:
    """Back-to-back national alerts on ``dep`` until ``total`` tasks, sampled every second,
    against one national alert on the same deployment just before (the burst rate this is
    compared with). ``reader`` (:mod:`benchmarks.exactreader`'s start, or None) follows the
    send topics live from the sustained run's start and counts every alert."""
    n = dep.n
    # the burst rate is a warm alert's: the first one on this worker pays its start
    # both counted as the run is (a live reader takes its share of the CPU in both)
    warmup = await _national(dep, Priority.EXTREME, "warm-up", n, broker_dir, reader=reader)
    burst = await _national(dep, Priority.EXTREME, "burst", n, broker_dir, reader=reader)
    _say(
        f"sustained: two national alerts first, {warmup['per_s']:,.0f} and"
        f" {burst['per_s']:,.0f} tasks/s (the second is the burst rate)"
    )
    samples: list[dict[str, float]] = []
    alerts = -(-total // n)
    published: list[Published] = []
    since = dep.marks()
    follower = None if reader is None else await asyncio.to_thread(reader, dep, since)
    base_offsets = sum(since.values())
    cpu0 = _cpu_view(dep, broker_dir)
    vm0 = _vmstat()
    started = time.monotonic()
    last_t, last_tasks = started, 0
    bar = _bar("sustained", alerts * n)
    while True:
        tasks = dep.tasks_on_broker() - base_offsets
        now = time.monotonic()
        if now - last_t >= 1.0 or tasks >= alerts * n:
            samples.append(
                {
                    "t_s": now - started,
                    "tasks": tasks,
                    "per_s": (tasks - last_tasks) / max(now - last_t, 1e-9),
                    "broker_disk_bytes": _disk_bytes(broker_dir) or 0,
                }
            )
            last_t, last_tasks = now, tasks
            bar.update(min(tasks, alerts * n))
        # transaction markers count in the offsets: done when every alert is published
        # and Loa's progress says the last one finished
        while len(published) < alerts and len(published) * n - tasks < 2 * n:
            published.append(await dep.publish(("VN",), wait=False))
        if len(published) == alerts and tasks >= alerts * n:
            break
        await asyncio.sleep(0.2)
    await dep.progress(published[-1])
    elapsed = time.monotonic() - started
    cpu = _cpu_spent(cpu0, _cpu_view(dep, broker_dir), alerts * n)
    reclaim = _reclaim(vm0, _vmstat())
    retained = int(dep.extra_topic_configs["retention.bytes"]) * dep.settings.partitions
    exact: bool | None = None
    counted_by = None
    reader_cpu_s = None
    per_alert: list[dict[str, Any]] = []
    if follower is not None:
        counted = await asyncio.to_thread(follower.stop)
        counted_by = "benchmarks/exact (Java, kafka-clients read_committed, RoaringBitmap)"
        if not follower.result.reached_end:
            counted_by += ": did not read to the end, not exact"
        reader_cpu_s = follower.result.raw.get("cpu_s")
    elif total * 300 < retained:  # every task still on the broker: count them all
        counted = dep.count(since)
        counted_by = "benchmarks/brokerclock.py (librdkafka read_committed)"
    else:
        counted = None
    if counted is not None:
        exact = True
        for p in published:
            c = counted.get(p.alert_id)
            ok = (
                c is not None
                and c.tasks == c.distinct == n
                and c.duplicates == 0
                and getattr(c, "missed", 0) == 0
                and (follower is None or follower.result.reached_end)
            )
            exact &= ok
            per_alert.append(
                {
                    "alert_id": p.alert_id,
                    "tasks": 0 if c is None else c.tasks,
                    "distinct": 0 if c is None else c.distinct,
                    "duplicates": 0 if c is None else c.duplicates,
                    "missed": 0 if c is None else getattr(c, "missed", 0),
                    "first_ms": None if c is None else c.first_ms,
                    "last_ms": None if c is None else c.last_ms,
                    "exact": ok,
                }
            )
        # the broker's clock: first task of the first alert to last task of the last
        firsts = [a["first_ms"] for a in per_alert if a["first_ms"] is not None]
        lasts = [a["last_ms"] for a in per_alert if a["last_ms"] is not None]
        if firsts and lasts and max(lasts) > min(firsts):
            broker_per_s = alerts * n / ((max(lasts) - min(firsts)) / 1000)
        else:
            broker_per_s = None
    else:
        broker_per_s = None
    per_s = alerts * n / elapsed
    return {
        "subscribers": n,
        "alerts": alerts,
        "tasks": alerts * n,
        "seconds": elapsed,
        "per_s": per_s,
        "per_s_broker_clock": broker_per_s,
        "warmup_per_s": warmup["per_s"],
        "burst_per_s": burst["per_s"],
        "burst_cpu": burst["cpu"],
        "cpu": cpu,
        "burst_reclaim": burst["reclaim"],
        "reclaim": reclaim,
        "ratio_to_burst": (broker_per_s or per_s) / burst["per_s"] if burst["per_s"] else None,
        "retention_bytes": int(dep.extra_topic_configs["retention.bytes"]),
        "samples": samples,
        "exact": exact,
        "counted_by": counted_by,
        # the live reader's own CPU (it shares the machine with the run it counts)
        "reader_cpu_s": reader_cpu_s,
        "per_alert": per_alert,
        "broker_disk_max_bytes": max((s["broker_disk_bytes"] for s in samples), default=0),
    }


def _java_count(dep: Deployment, since: Marks) -> Any:
    """The exact reader over the send topics from ``since`` to their end, after the fact."""
    from benchmarks import exactreader

    reader = exactreader.start(
        dep.settings, dep.sends_topics(), dep.workdir / "exact", from_offsets=since
    )
    reader.stop()
    return reader.result


def _delete_counted(dep: Deployment) -> None:
    """Delete the send topics' records up to their end (DeleteRecords): counted, not needed."""
    admin = AdminClient(dep.librdkafka())
    ends = watermarks(dep.settings, dep.sends_topics())
    tps = [RdTopicPartition(t, p, o) for (t, p), o in ends.items() if o > 0]
    if tps:
        for future in admin.delete_records(tps, request_timeout=60).values():
            future.result(timeout=120)


def _retention(retention_bytes: int) -> dict[str, str]:
    """Send-topic configs of a run whose tasks are counted live and need not stay on disk."""
    return {
        "retention.bytes": str(retention_bytes),
        "segment.bytes": str(max(retention_bytes // 4, 1_048_576)),
        # a segment past the retention is deleted 1 s after it is dropped, not 60 s (Kafka's
        # default): at 1M tasks/s that is 14 GB less on disk
        "file.delete.delay.ms": "1000",
    }


def _reader(args: argparse.Namespace, *, fits: bool) -> Callable[[Deployment, Any], Any] | None:
    """The live counter (the Java reader), or None to count after the run with librdkafka
    (possible only when every task is still on the broker at the end: ``fits``)."""
    if args.reader == "librdkafka" or (args.reader == "auto" and fits):
        return None
    from benchmarks import exactreader

    def start(dep: Deployment, since: Any) -> Any:
        # started right after `since` was taken, on an idle worker: it reads from the end
        return exactreader.start(dep.settings, dep.sends_topics(), dep.workdir / "exact")

    return start


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("LOA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    port = os.environ.setdefault("LOA_KAFKA_PORT", "19992")
    env_settings = load_settings(bootstrap_servers=bootstrap or f"127.0.0.1:{port}")
    base = replace(env_settings, partitions=args.partitions)
    broker_dir = Path(args.broker_dir) if args.broker_dir else None
    started_broker = False if bootstrap else start_broker(base)
    if started_broker and broker_dir is None:
        broker_dir = Path(
            os.environ.get("LOA_KAFKA_DIR") or Path.home() / ".cache/loa/kafka-run" / port
        )
    sections = args.only.split(",") if args.only else list(SECTIONS)
    result: dict[str, Any] = {
        "command": " ".join(["loa bench", *args.argv]),
        "settings": {
            "sizes": args.sizes,
            "workers": args.workers,
            "partitions": args.partitions,
            "quick": args.quick,
            "bootstrap_servers": base.bootstrap_servers,
        },
        "load_before": os.getloadavg(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmpdir:
            tmp = Path(args.workdir or tmpdir)
            if "fanout" in sections:
                result["worker_start"] = WORKER_START
                result["fanout"] = await fanout_section(
                    base,
                    args.sizes,
                    args.workers,
                    tmp,
                    broker_dir,
                    tuple(args.runs.split(",")),
                    args.reader == "java",
                    args.keep_topics,
                )
            if "peers" in sections:
                names = args.peers.split(",")
                unknown = set(names) - set(PEERS)
                if unknown:
                    raise SystemExit(f"unknown peers {sorted(unknown)}; known: {sorted(PEERS)}")
                result["peers"] = await asyncio.to_thread(
                    peers_section,
                    base,
                    args.peer_records or max(args.sizes),
                    args.faust_records,
                    names,
                    _task_bytes(result.get("fanout", [])),
                    broker_dir,
                )
            for section, size in (
                ("latency", args.latency_subscribers),
                ("sustained", args.sustained_subscribers or max(args.sizes)),
            ):
                if section not in sections:
                    continue
                # a deployment each, its send topics retention-limited
                retention = args.retention_bytes
                dep = Deployment(
                    base,
                    size,
                    tmp,
                    extra_topic_configs=_retention(retention),
                )
                await dep.create()
                _say(f"{section}: loading {size:,} subscribers")
                await dep.load()
                dep.start_workers(1)
                try:
                    await asyncio.to_thread(dep.wait_ready)
                    if section == "latency":
                        result["latency"] = await latency_section(dep, args.latency_alerts)
                    else:
                        result["sustained"] = await sustained_section(
                            dep,
                            int(args.total),
                            broker_dir,
                            _reader(
                                args,
                                fits=args.total * 300 < args.retention_bytes * args.partitions,
                            ),
                        )
                finally:
                    dep.stop_workers()
    finally:
        if not args.keep_topics:
            deleted = delete_topics(base, RUN_PREFIX)
            _say(f"deleted {len(deleted)} bench topics and their consumer groups ({RUN_PREFIX}*)")
        if started_broker:
            stop_broker(base)
    result["load_after"] = os.getloadavg()
    return report.finish(result, Path(args.out), plots=not args.no_plots)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loa bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Full description: benchmarks/run.py and README.md, section Benchmarks.",
    )
    ints = lambda s: [int(float(x)) for x in s.split(",")]  # noqa: E731
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: small sizes, every peer, "
        "fails unless every figure was produced and every count is exact",
    )
    p.add_argument(
        "--sizes",
        type=ints,
        default=[1_000_000, 10_000_000],
        help="directory sizes, e.g. 1e6,1e7,1e8 (default 1e6,1e7)",
    )
    p.add_argument("--workers", type=ints, default=[1, 2, 4], help="worker processes (1,2,4)")
    p.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    p.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    p.add_argument(
        "--runs",
        default=",".join(RUNS),
        help="fan-out runs with the first worker count (loa: extreme, throttle off;"
        " loa+throttle; loa+caps: routine alert under caps and opt-outs)",
    )
    p.add_argument("--peers", default=",".join(PEERS), help="peers to run (all)")
    p.add_argument(
        "--peer-records",
        type=lambda s: int(float(s)),
        default=None,
        help="records per peer (default: the largest --sizes, as many tasks as Loa's"
        " largest run: a 1M burst fits in the page cache and one log segment per partition,"
        " 10M does not)",
    )
    p.add_argument(
        "--faust-records",
        type=lambda s: int(float(s)),
        default=20_000,
        help="records of the naive Faust peer (slow: bounded)",
    )
    p.add_argument("--latency-alerts", type=int, default=120, help="one-ward alerts (>= 100)")
    p.add_argument("--latency-subscribers", type=lambda s: int(float(s)), default=1_000_000)
    p.add_argument(
        "--total",
        type=float,
        default=5e7,
        help="sustained mode: tasks in total, back-to-back national alerts (1e9 ok)",
    )
    p.add_argument(
        "--sustained-subscribers",
        type=lambda s: int(float(s)),
        default=None,
        help="sustained mode: subscribers, i.e. tasks per national alert (default: the largest"
        " --sizes, so the sustained rate compares with that size's burst)",
    )
    p.add_argument(
        "--reader",
        choices=("auto", "java", "librdkafka"),
        default="auto",
        help="sustained mode's independent counter: java follows the send topics live (every"
        " alert counted even when retention deletes them later); librdkafka reads them after"
        " the run (only when they all fit in the retention); auto: java when the run does not"
        " fit, else librdkafka",
    )
    p.add_argument(
        "--retention-bytes",
        type=int,
        default=512 * 1024 * 1024,
        help="sustained mode: retention.bytes per send-task partition",
    )
    p.add_argument("--broker-dir", help="broker data directory, for the disk figure")
    p.add_argument("--workdir", help="keep worker logs and data here (default: a temp dir)")
    p.add_argument("--out", default=str(report.RESULTS), help="results directory")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--keep-topics", action="store_true")
    return p


def cli(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.quick:
        args.sizes, args.workers = [20_000], [1, 2]
        args.peer_records, args.faust_records = 20_000, 2_000
        args.latency_alerts, args.latency_subscribers = 20, 20_000
        args.total, args.retention_bytes = 60_000, 64 * 1024 * 1024
    result = asyncio.run(main(args))
    problems = report.check(result)
    if args.json:
        import json

        print(json.dumps(result, indent=2))
    else:
        print(report.table(result))
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(cli())
