"""The independent exactness counter, live: a Java reader that follows the send-task topics.

Where it sits: beside the sustained bench (``loa bench --total 1e9``), whose send topics are
retention-limited, so the tasks must be counted while Loa writes them, not after.
:func:`benchmarks.brokerclock.count_tasks` (librdkafka through Python, 0.2–0.3M records/s)
cannot keep up; this module starts ``benchmarks/exact`` (the Java Kafka client and
RoaringBitmap, sharing no code with Loa; docs/benchmarks-exact.md) before the run and stops it
after. The result has :class:`~benchmarks.brokerclock.BrokerCount`'s fields per alert, plus
``missed``.

Guarantee: each committed record between the start offsets and the end offsets seen after
:meth:`ExactReader.stop` is counted once; offsets retention deleted before the reader reached
them are counted as ``missed`` (offsets, so transaction markers in the gap count too: an upper
bound on lost records). A run with ``missed > 0`` or not read to its end is not exact; the
reader cannot tell which alert a deleted record belonged to, so every alert carries the run's
``missed``.

Connection: plaintext only (the local and bench brokers). SASL or TLS settings stop
:func:`start` with :class:`ExactReaderUnsupported` rather than connect differently than Loa.

``python -m benchmarks.exactreader bench`` measures the reader against ``count_tasks`` on one
core (``benchmarks/exact/bench.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from benchmarks.brokerclock import BrokerCount
from streams.errors import OperatorError
from streams.kafkaio.clients import client_options
from streams.settings.model import Settings

__all__ = [
    "AlertCount",
    "ExactReader",
    "ExactReaderFailed",
    "ExactReaderUnsupported",
    "ExactResult",
    "build_jar",
    "start",
]

HERE = Path(__file__).resolve().parent
EXACT_DIR = HERE / "exact"
JAR = EXACT_DIR / "target" / "loa-exact.jar"
BUILD = EXACT_DIR / "build.sh"


class ExactReaderUnsupported(OperatorError):
    """The settings ask for a connection the reader does not speak (SASL, TLS). Poison."""

    hint = "run the exact reader against a plaintext broker (the local bench broker)"


class ExactReaderFailed(OperatorError):
    """The reader did not start, exited with an error, or did not finish in time. Poison for
    this run: its count is gone; the bench is run again."""

    hint = "see the reader's log (named in the message) and run the bench again"


@dataclass(slots=True)
class AlertCount(BrokerCount):
    """What the reader counted for one alert id (``""``: values without an alert id): the
    fields of :class:`~benchmarks.brokerclock.BrokerCount` (``per_partition`` summed over the
    topics), plus ``missed`` and the records per topic."""

    #: offsets of the whole run deleted before the reader reached them (not per alert: a
    #: deleted record's alert is unknown); > 0 means this count is not exact
    missed: int = 0
    #: records per topic, then partition
    per_topic_partition: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExactResult:
    """The whole run: per-alert counts and what says whether they are exact."""

    alerts: dict[str, AlertCount]
    #: committed records read, all alerts
    records: int
    #: offsets deleted by retention before they were read
    missed: int
    #: read up to the end offsets seen after the stop (False: stopped by --idle-s)
    reached_end: bool
    #: the reader's own time from its first poll to done, and records per second over it
    seconds: float
    per_s: float
    #: the reader's JSON as written (partitions with start/stop offsets)
    raw: dict[str, Any]

    @property
    def exact(self) -> bool:
        return self.reached_end and self.missed == 0


def alert_counts(raw: dict[str, Any]) -> dict[str, AlertCount]:
    """The reader's JSON ``alerts`` as :class:`AlertCount` (averages of key/value bytes)."""
    counts: dict[str, AlertCount] = {}
    for alert_id, a in raw["alerts"].items():
        per_topic = {
            topic: {int(p): int(n) for p, n in parts.items()}
            for topic, parts in a["per_partition"].items()
            if parts
        }
        per_partition: dict[int, int] = {}
        for parts in per_topic.values():
            for p, n in parts.items():
                per_partition[p] = per_partition.get(p, 0) + n
        tasks = int(a["tasks"])
        counts[alert_id] = AlertCount(
            tasks=tasks,
            distinct=int(a["distinct"]),
            duplicates=int(a["duplicates"]),
            first_ms=int(a["first_ms"]),
            last_ms=int(a["last_ms"]),
            per_partition=dict(sorted(per_partition.items())),
            key_bytes=a["key_bytes"] / max(tasks, 1),
            value_bytes=a["value_bytes"] / max(tasks, 1),
            missed=int(raw["missed"]),
            per_topic_partition=per_topic,
        )
    return counts


def plaintext_bootstrap(settings: Settings) -> str:
    """The bootstrap address, if the settings connect in plaintext; else
    :class:`ExactReaderUnsupported` (the reader passes no credentials)."""
    options = client_options(settings)
    protocol = str(options.pop("security_protocol", "PLAINTEXT"))
    bootstrap = str(options.pop("bootstrap_servers"))
    if protocol.upper() != "PLAINTEXT" or options:
        extra = ", ".join(sorted(options))
        raise ExactReaderUnsupported(
            f"the exact reader speaks plaintext Kafka only; the settings ask for"
            f" {protocol}{' with ' + extra if extra else ''}"
        )
    return bootstrap


def _sources() -> list[Path]:
    return [EXACT_DIR / "pom.xml", BUILD, *sorted((EXACT_DIR / "src").rglob("*.java"))]


def build_jar(*, force: bool = False) -> Path:
    """The reader's jar, built by ``benchmarks/exact/build.sh`` when missing or older than its
    sources (the first build fetches its dependencies from Maven Central)."""
    if not force and JAR.exists():
        built = JAR.stat().st_mtime
        if all(p.stat().st_mtime <= built for p in _sources()):
            return JAR
    proc = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0 or not JAR.exists():
        raise ExactReaderFailed(
            f"building the exact reader failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}",
            hint="benchmarks/exact/build.sh needs mvn, Java 17 and Maven Central (once)",
        )
    return JAR


class ExactReader:
    """A running reader (from :func:`start`); :meth:`stop` ends it and returns its counts.
    As a context manager, it is killed on leaving the block if it still runs."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, log: IO[bytes]) -> None:
        self.proc = proc
        self.workdir = workdir
        self.log_path = workdir / "exact-reader.log"
        self.stop_file = workdir / "exact-reader.stop"
        self.out = workdir / "exact-reader.json"
        self._log = log
        self.result: ExactResult | None = None

    def _failed(self, what: str) -> ExactReaderFailed:
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return ExactReaderFailed(f"the exact reader {what} (log {self.log_path}):\n{tail}")

    def stop(self, timeout: float = 1800.0) -> dict[str, AlertCount]:
        """Tell the reader to finish (it reads to the end offsets it sees now), wait up to
        ``timeout`` s for it (the default gives a reader 1M records/s behind half an hour),
        and return its counts per alert; the whole run is in :attr:`result`. Raises
        :class:`ExactReaderFailed` if it fails or overruns."""
        self.stop_file.touch()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._failed(f"did not finish within {timeout:g} s of the stop") from None
        finally:
            self._log.close()
        if code != 0:
            raise self._failed(f"exited with {code}")
        raw = json.loads(self.out.read_text())
        self.result = ExactResult(
            alerts=alert_counts(raw),
            records=int(raw["records"]),
            missed=int(raw["missed"]),
            reached_end=bool(raw["reached_end"]),
            seconds=float(raw["seconds"]),
            per_s=float(raw["per_s"]),
            raw=raw,
        )
        return self.result.alerts

    def __enter__(self) -> ExactReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a no-op after stop(); ends a reader the caller left running

    def kill(self) -> None:
        """End the reader now, without a result (a bench that failed on its own)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


def start(
    settings: Settings,
    topics: Iterable[str],
    workdir: Path,
    *,
    from_: Literal["beginning", "end"] = "end",
    from_offsets: dict[tuple[str, int], int] | None = None,
    idle_s: float = 60.0,
    progress_s: float = 5.0,
    cpus: Sequence[int] | None = None,
    heap: str = "3g",
    ready_timeout_s: float = 120.0,
) -> ExactReader:
    """Start the reader on every partition of ``topics`` and return once it has its start
    offsets (so records written after this call are counted with ``from_="end"``).

    ``from_offsets`` (topic, partition) -> offset, e.g. the end offsets noted before one alert:
    each partition starts there (one not named at 0), instead of ``from_``.
    ``from_="beginning"`` starts at offset 0 (what retention already deleted counts as
    missed). ``idle_s``: after :meth:`ExactReader.stop`, give up reading to the end after this
    long without a record (the result then says ``reached_end`` False). ``cpus``: pin the
    reader to these cores (``taskset``). Progress lines go to ``workdir/exact-reader.log``.
    """
    bootstrap = plaintext_bootstrap(settings)
    jar = build_jar()
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "exact-reader.ready"
    handle_files = [ready, workdir / "exact-reader.stop", workdir / "exact-reader.json"]
    for stale in handle_files:
        stale.unlink(missing_ok=True)
    java = shutil.which("java")
    if java is None:
        raise ExactReaderFailed("java is not on PATH", hint="install Java 17")
    argv = [
        java,
        f"-Xmx{heap}",
        "-XX:+UseParallelGC",
        "-jar",
        str(jar),
        "--bootstrap",
        bootstrap,
        "--topics",
        ",".join(topics),
        *(
            ["--from", from_]
            if from_offsets is None
            else ["--from-offsets", str(_offsets_file(workdir, from_offsets))]
        ),
        "--stop-file",
        str(workdir / "exact-reader.stop"),
        "--idle-s",
        f"{idle_s:g}",
        "--out",
        str(workdir / "exact-reader.json"),
        "--progress-s",
        f"{progress_s:g}",
        "--ready-file",
        str(ready),
    ]
    if cpus is not None:
        argv = ["taskset", "-c", ",".join(str(c) for c in cpus), *argv]
    log = (workdir / "exact-reader.log").open("wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    handle = ExactReader(proc, workdir, log)
    deadline = time.monotonic() + ready_timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            handle.kill()
            raise handle._failed(f"exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            handle.kill()
            raise handle._failed(f"was not ready within {ready_timeout_s:g} s")
        time.sleep(0.05)
    return handle


def _offsets_file(workdir: Path, offsets: dict[tuple[str, int], int]) -> Path:
    """``--from-offsets``' file: a line ``topic partition offset`` per partition."""
    path = workdir / "exact-reader.offsets"
    path.write_text("".join(f"{t} {p} {o}\n" for (t, p), o in sorted(offsets.items())))
    return path


# ---------------------------------------------------------------- the measurement


def task_value(alert_id: str, size: int) -> bytes:
    """A send-task-shaped value of ``size`` bytes: ``{"alert_id":"<id>"`` first, as Loa
    writes it, padded to the size of Loa's tasks (225 bytes in benchmarks/results)."""
    head = b'{"alert_id":"%s","version":1,"kind":"alert","channel":"push","pad":"' % (
        alert_id.encode()
    )
    return head + b"x" * max(size - len(head) - 2, 0) + b'"}'


def write_tasks(
    settings: Settings,
    topics: Sequence[str],
    records: int,
    alerts: int,
    *,
    value_size: int = 225,
    per_transaction: int = 500_000,
) -> dict[str, int]:
    """Write ``records`` tasks with a transactional confluent-kafka producer: alert ``k`` of
    ``alerts`` goes to topic ``k % len(topics)`` with recipients 0.. (keys in decimal), a
    transaction per ``per_transaction`` records. Returns the records per alert id."""
    from confluent_kafka import Producer

    from benchmarks.brokerclock import client_config

    producer = Producer(
        {
            **client_config(settings),
            "transactional.id": f"{settings.topic_prefix}-exact-bench",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    producer.init_transactions(60)
    per_alert = -(-records // alerts)
    written: dict[str, int] = {}
    in_txn = 0
    producer.begin_transaction()
    for k in range(alerts):
        alert_id = f"exact-bench-{k}"
        value = task_value(alert_id, value_size)
        topic = topics[k % len(topics)]
        count = min(per_alert, records - sum(written.values()))
        written[alert_id] = count
        for recipient in range(count):
            while True:
                try:
                    producer.produce(topic, value, b"%d" % recipient)
                    break
                except BufferError:
                    producer.poll(0.05)
            in_txn += 1
            if in_txn >= per_transaction:
                producer.commit_transaction(120)
                producer.begin_transaction()
                in_txn = 0
    producer.commit_transaction(120)
    return written


def bench(
    settings: Settings, records: int, workdir: Path, *, cpu: int, partitions: int
) -> dict[str, Any]:
    """Write ``records`` tasks to two fresh send topics, then read them all with the exact
    reader pinned to core ``cpu`` (start to exit, JVM start included) and with
    :func:`~benchmarks.brokerclock.count_tasks` pinned to the same core; their figures must
    agree."""
    from benchmarks.brokerclock import count_tasks, create_log_append_topics, delete_topics

    topics = [settings.sends_topic("extreme"), settings.sends_topic("routine")]
    create_log_append_topics(settings, dict.fromkeys(topics, partitions))
    try:
        t0 = time.monotonic()
        written = write_tasks(settings, topics, records, alerts=4)
        write_s = time.monotonic() - t0

        t0 = time.monotonic()
        reader = start(settings, topics, workdir, from_="beginning", cpus=[cpu], idle_s=60)
        exact = reader.stop(timeout=3600)  # stop at once: read to the ends seen at start
        exact_s = time.monotonic() - t0
        assert reader.result is not None

        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})  # librdkafka's threads start inside count_tasks
        try:
            t0, cpu0 = time.monotonic(), time.process_time()  # all threads' CPU time
            counted = count_tasks(settings, topics, timeout_s=300)
            count_s, count_cpu_s = time.monotonic() - t0, time.process_time() - cpu0
        finally:
            os.sched_setaffinity(0, before)
    finally:
        delete_topics(settings, settings.topic_prefix + ".")

    agree = all(
        exact[a].tasks == counted[a].tasks == n
        and exact[a].distinct == counted[a].distinct
        and exact[a].duplicates == counted[a].duplicates
        and (exact[a].first_ms, exact[a].last_ms) == (counted[a].first_ms, counted[a].last_ms)
        and exact[a].per_partition == counted[a].per_partition
        for a, n in written.items()
    ) and set(exact) == set(counted) == set(written)
    return {
        "records": records,
        "topics": len(topics),
        "partitions_per_topic": partitions,
        "cpu": cpu,
        "write_s": write_s,
        "exact_reader": {
            "wall_s": exact_s,
            "wall_per_s": records / exact_s,
            "own_s": reader.result.seconds,
            "own_per_s": reader.result.per_s,
            "cpu_s": reader.result.raw["cpu_s"],
            "per_cpu_s": reader.result.raw["per_cpu_s"],
            "missed": reader.result.missed,
            "exact": reader.result.exact,
        },
        "count_tasks": {
            "wall_s": count_s,
            "wall_per_s": records / count_s,
            "cpu_s": count_cpu_s,
            "per_cpu_s": records / count_cpu_s,
        },
        "ratio_wall": count_s / exact_s,
        "ratio_cpu": count_cpu_s / reader.result.raw["cpu_s"],
        "load_average_1m": os.getloadavg()[0],
        "figures_agree": agree,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.exactreader bench [--records N]``: the measurement above, on
    the broker of ``LOA_BOOTSTRAP_SERVERS``; prints its JSON."""
    import argparse
    import tempfile
    import uuid

    from streams.settings.load import load_settings

    parser = argparse.ArgumentParser(prog="python -m benchmarks.exactreader")
    parser.add_argument("what", choices=["bench", "build"])
    parser.add_argument("--records", type=float, default=20e6)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--cpu", type=int, default=1, help="the one core both readers get")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.what == "build":
        print(build_jar(force=True))
        return 0
    settings = load_settings(topic_prefix=f"bench-exact-{uuid.uuid4().hex[:8]}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="loa-exact-"))
    result = bench(settings, int(args.records), workdir, cpu=args.cpu, partitions=args.partitions)
    print(json.dumps(result, indent=2))
    return 0 if result["figures_agree"] and result["exact_reader"]["exact"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
