"""The first national alert on a worker a user started, measured from outside (issue 22, item 1).

For each mode, from nothing: a fresh dev broker of its own (``deploy/kafka/kafka.sh`` on its
own port and data directory, stopped at the end), ``loa init``, an agency key (``loa keys
new``, ``loa agencies load --key``), ``loa directory load --synthetic N``, then ``loa worker``
as a subprocess with only documented ``LOA_*`` settings, waited for on ``/ready``. Then two
national Extreme alerts, each signed and sent with ``loa publish``: the first on the worker
as it came up, the second right after on the same (now warm) worker and broker. Tasks are
counted per alert by the independent librdkafka ``read_committed`` reader
(:mod:`benchmarks.brokerclock`), rates by the broker's clock (LogAppendTime).

Modes (``--modes``):

* ``user``: ``loa worker`` with the defaults (what README "Running it" tells a user to run).
* ``bench``: the worker environment :meth:`benchmarks.harness.Deployment.start_workers` gave
  until 2026-12-06 (``LOA_LOG_LEVEL=WARNING``; it now leaves the level at its default) and
  still gives (a per-run ``LOA_INSTANCE_ID``), and the bench's procedure
  before its first national alert (a one-ward alert first, then :func:`benchmarks.run.settle`:
  ``sync`` and a wait until broker and worker are idle).
* ``user-warning``: ``user`` with ``LOA_LOG_LEVEL=WARNING`` only.
* ``user-settled``: ``user`` with the bench's settle wait only (no warm-up alert).
* ``user-warm``: ``user`` with the bench's one-ward alert only (no settle wait).
* ``user-lag0``: ``user`` with the directory topic compactable as soon as it is loaded
  (``min.compaction.lag.ms=0``, as Loa created it before 2026-12-06).
* ``user-pretouch``: ``user`` on a dev broker whose heap is committed and touched at start
  (``KAFKA_HEAP_OPTS="-Xms1g -Xmx1g -XX:+AlwaysPreTouch"``).

What every mode shares and a production cluster would not: the send-task and inbound topics
are switched to ``message.timestamp.type=LogAppendTime`` right after ``loa init`` (before any
record), so the broker stamps the times counted; the worker's ``LOA_DATA_DIR`` and
``LOA_METRICS_PORT`` are set so runs on a shared machine do not meet.

``python -m benchmarks.first_alert --subscribers 1e7`` prints the figures and writes
``benchmarks/results/first_alert.json``. ``--profile`` records the worker with py-spy during
each alert (``py-spy`` must be on PATH or next to the interpreter).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not in its __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from benchmarks import brokerprofile
from benchmarks.brokerclock import client_config, count_tasks, watermarks
from benchmarks.harness import ALERT_SENDER, alert_json, proc_stat, spent_by_thread, thread_cpu
from benchmarks.run import settle
from streams.demo.localrun import free_port, wait_ready
from streams.records import Priority
from streams.regions import registry
from streams.settings.model import Settings

REPO = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"
RESULTS = Path(__file__).resolve().parent / "results"
KEY_ID = f"{ALERT_SENDER}/first-alert"


@dataclass(frozen=True, slots=True)
class Mode:
    """How one run starts its worker and what it does before the first national alert."""

    name: str
    #: LOA_* variables given to ``loa worker`` beyond the connection, data dir and metrics port
    env: dict[str, str] = field(default_factory=dict)
    #: a one-ward alert before the first national one (the bench does this to wait for restore)
    warm_alert: bool = False
    #: sync + wait for an idle broker and worker (:func:`benchmarks.run.settle`)
    settle: bool = False
    #: topic configs changed right after ``loa init`` (topic name -> config -> value)
    topic_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: variables for ``deploy/kafka/kafka.sh`` (e.g. ``KAFKA_HEAP_OPTS``)
    broker_env: dict[str, str] = field(default_factory=dict)
    #: records of task size written in transactions to a scratch topic before the first
    #: alert (by librdkafka, not Loa): would warming the broker's produce path help?
    jit_warmup_records: int = 0

    def differences(self) -> list[str]:
        lines = [f"{k}={v}" for k, v in sorted(self.env.items())]
        lines += [
            f"topic {topic}: {name}={value}"
            for topic, configs in self.topic_configs.items()
            for name, value in configs.items()
        ]
        lines += [f"broker {k}={v}" for k, v in sorted(self.broker_env.items())]
        if self.warm_alert:
            lines.append("a one-ward alert before the first national alert")
        if self.settle:
            lines.append("sync + wait until broker and worker idle (< 0.15 core, <= 90 s)")
        if self.jit_warmup_records:
            lines.append(
                f"{self.jit_warmup_records:,} task-sized records written in transactions to a"
                " scratch topic before the first alert"
            )
        return lines or ["none: the documented defaults"]


MODES = {
    "user": Mode("user"),
    "user-warning": Mode("user-warning", env={"LOA_LOG_LEVEL": "WARNING"}),
    "user-settled": Mode("user-settled", settle=True),
    "user-warm": Mode("user-warm", warm_alert=True),
    # the directory topic as Loa created it before 2026-12-06: compacted as soon as loaded
    "user-lag0": Mode(
        "user-lag0", topic_configs={"loa.directory.changes": {"min.compaction.lag.ms": "0"}}
    ),
    # the dev broker's heap committed and touched at start, not during the first alert
    "user-pretouch": Mode(
        "user-pretouch",
        broker_env={"KAFKA_HEAP_OPTS": "-Xms1g -Xmx1g -XX:+AlwaysPreTouch"},
    ),
    # the broker's produce and transaction path run (and JIT-compiled) before the first alert
    "user-jit": Mode("user-jit", jit_warmup_records=1_000_000),
    "user-jit200k": Mode("user-jit200k", jit_warmup_records=200_000),
    # the broker's JIT thresholds at a tenth: per-request methods (one call per produce
    # request, ~2,500 requests per 10M alert) reach C2 during the load and restore, not during
    # the first alerts (benchmarks.brokerprofile showed C2 compiling them over three alerts)
    "user-cts": Mode("user-cts", broker_env={"KAFKA_OPTS": "-XX:CompileThresholdScaling=0.1"}),
    "bench": Mode(
        "bench",
        env={"LOA_LOG_LEVEL": "WARNING", "LOA_INSTANCE_ID": "bench-worker-0"},
        warm_alert=True,
        settle=True,
    ),
}


def _say(msg: str) -> None:
    print(f"[first-alert {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _tool(name: str) -> str:
    """A console script of this interpreter's environment (``loa``, ``py-spy``), else PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found next to {sys.executable} or on PATH")
    return found


def _clean_env() -> dict[str, str]:
    """This process's environment without any Loa or Kafka setting: each run states its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LOA_", "KAFKA_")) and k != "PYTHONPATH"
    }


@dataclass
class Stack:
    """One mode's broker, CLI environment and worker."""

    mode: Mode
    workdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    @property
    def broker_dir(self) -> Path:
        return self.workdir / "kafka"

    @property
    def settings(self) -> Settings:
        return Settings(bootstrap_servers=f"127.0.0.1:{self.port}")

    def broker_env(self) -> dict[str, str]:
        return {
            **_clean_env(),
            "LOA_KAFKA_PORT": str(self.port),
            "LOA_KAFKA_CONTROLLER_PORT": str(self.port + 1),
            "LOA_KAFKA_DIR": str(self.broker_dir),
            **self.mode.broker_env,
        }

    def start_broker(self) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], env=self.broker_env(), check=True)
        self.env = {
            **_clean_env(),
            "LOA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}",
            "LOA_DATA_DIR": str(self.workdir / "data"),
        }

    def stop_broker(self) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], env=self.broker_env(), check=False)

    def loa(self, *args: str, check: bool = True) -> str:
        """Run ``loa ARGS`` as a user would; its stdout."""
        done = subprocess.run(
            [_tool("loa"), *args], env=self.env, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"loa {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def agency_key(self) -> Path:
        """``loa keys new`` for the alert sender into ``keys/`` (the private key also as
        ``key.key``), its public key loaded with ``loa agencies load``; the private key."""
        keys = self.workdir / "keys"
        self.loa("keys", "new", "--agency", ALERT_SENDER, "--out", str(keys), "--key-id", KEY_ID)
        private = next(keys.glob("*.key"))
        shutil.copy(private, self.workdir / "key.key")
        self.loa("agencies", "load", "--key", str(next(keys.glob("*.pub.json"))))
        return private

    def alter_topics(self, configs: dict[str, dict[str, str]]) -> None:
        """Set topic configs (topic name -> config -> value)."""
        admin = AdminClient(client_config(self.settings))
        for topic, values in configs.items():
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in values.items()
            ]
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=60)

    def stamp_topics(self) -> list[str]:
        """Send-task and inbound topics to LogAppendTime (before any record is written)."""
        s = self.settings
        names = [s.sends_topic(p.value) for p in Priority] + [s.inbound_topic]
        self.alter_topics({n: {"message.timestamp.type": "LogAppendTime"} for n in names})
        return names

    def start_worker(self) -> float:
        """``loa worker`` with the mode's settings; seconds until ``/ready`` answers 200."""
        self.metrics_port = free_port()
        env = {**self.env, "LOA_METRICS_PORT": str(self.metrics_port), **self.mode.env}
        log = (self.workdir / "worker.log").open("ab")
        started = time.monotonic()
        self.worker = subprocess.Popen(
            [_tool("loa"), "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(self.worker, self.metrics_port, Path(log.name), 900.0)
        return time.monotonic() - started

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()

    def broker_pid(self) -> int:
        try:
            return int((self.broker_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return 0


def dirty_mb() -> float:
    """Page cache not yet written back (``Dirty`` + ``Writeback`` of /proc/meminfo), MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(fields[k].split()[0]) for k in ("Dirty", "Writeback")) / 1024


def disk_written_mb() -> float:
    """MB written to the whole disks so far (/proc/diskstats, partitions left out)."""
    total = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if len(f) > 9 and not f[2].startswith(("loop", "ram")) and not f[2][-1].isdigit():
            total += int(f[9])  # sectors written, 512 bytes each
    return total * 512 / 1e6


def _inbound_append_ms(settings: Settings, identifier: str) -> int:
    """The broker's append time of the inbound record carrying ``identifier``."""
    consumer = Consumer({**client_config(settings), "group.id": f"first-alert-{time.time_ns()}"})
    try:
        topic = settings.inbound_topic
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + 60
        needle = identifier.encode()
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            if needle in (msg.value() or b""):
                return int(msg.timestamp()[1])
        raise TimeoutError(f"inbound record of {identifier} not found")
    finally:
        consumer.close()


def _wait_emitted(stack: Stack, marks: dict[tuple[str, int], int], want: int) -> None:
    """Until the send-task topics grew by ``want`` records (plus markers) or stopped growing."""
    topics = [stack.settings.sends_topic(p.value) for p in Priority]
    last, still = -1, time.monotonic()
    while True:
        grown = sum(watermarks(stack.settings, topics).values()) - sum(marks.values())
        if grown >= want:
            # the end offsets count transaction markers too: wait a moment for the last commits
            time.sleep(2.0)
            return
        if grown != last:
            last, still = grown, time.monotonic()
        elif time.monotonic() - still > 120:
            return  # stalled: the count below says how many made it
        time.sleep(0.5)


def national(
    stack: Stack, label: str, n: int, profile: Path | None, broker_profile: Path | None = None
) -> dict[str, Any]:
    """Publish one signed national Extreme alert with ``loa publish``; count its tasks."""
    settings = stack.settings
    topics = [settings.sends_topic(p.value) for p in Priority]
    marks = watermarks(settings, topics)
    identifier = f"FA{time.time_ns() % 10**12}"
    alert_file = stack.workdir / f"{identifier}.json"
    alert_file.write_bytes(alert_json(identifier, ("VN",), Priority.EXTREME))
    assert stack.worker is not None
    worker_cpu0 = proc_stat(stack.worker.pid)[0]
    broker_cpu0 = proc_stat(stack.broker_pid())[0]
    broker_threads0 = thread_cpu(stack.broker_pid())
    dirty0, written0 = dirty_mb(), disk_written_mb()
    worker_threads0 = thread_cpu(stack.worker.pid)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                _tool("py-spy"),
                "record",
                "--pid",
                str(stack.worker.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(profile / f"{stack.mode.name}-{label}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    if broker_profile is not None:
        brokerprofile.start(stack.broker_pid())
    answer = json.loads(
        stack.loa(
            "publish",
            str(alert_file),
            "--key",
            str(stack.workdir / "key.key"),
            "--json",
            "--timeout",
            "300",
        )
    )
    if answer.get("outcome") != "accepted":
        raise RuntimeError(f"the alert was not accepted: {answer}")
    _wait_emitted(stack, marks, n)
    broker_samples = None
    if broker_profile is not None:
        collapsed = broker_profile / f"{stack.mode.name}-{label}.collapsed"
        brokerprofile.stop(stack.broker_pid(), collapsed)
        broker_samples = brokerprofile.summarize(collapsed)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(60)
    worker_cpu = proc_stat(stack.worker.pid)[0] - worker_cpu0
    broker_cpu = proc_stat(stack.broker_pid())[0] - broker_cpu0
    broker_threads = spent_by_thread(broker_threads0, thread_cpu(stack.broker_pid()))
    worker_threads = spent_by_thread(worker_threads0, thread_cpu(stack.worker.pid))
    count = count_tasks(settings, topics, since=marks).get(f"{ALERT_SENDER}/{identifier}")
    if count is None:
        raise RuntimeError(f"no task of {identifier} on the broker")
    appended = _inbound_append_ms(settings, identifier)
    return {
        "alert": label,
        "tasks": count.tasks,
        "distinct": count.distinct,
        "duplicates": count.duplicates,
        "exact": count.tasks == count.distinct == n and count.duplicates == 0,
        "per_s": count.per_s,
        "first_to_last_s": count.seconds,
        "publish_to_first_task_s": (count.first_ms - appended) / 1000,
        "publish_to_last_task_s": (count.last_ms - appended) / 1000,
        "worker_cpu_s": worker_cpu,
        "broker_cpu_s": broker_cpu,
        "dirty_mb_at_publish": round(dirty0, 1),
        "disk_written_mb": round(disk_written_mb() - written0, 1),
        "broker_threads_cpu_s": broker_threads,
        "worker_threads_cpu_s": worker_threads,
        **({"broker_profile": broker_samples} if broker_samples is not None else {}),
    }


def _top(threads: dict[str, float], n: int = 4) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in list(threads.items())[:n])


def jit_warmup(settings: Settings, records: int, partitions: int = 8) -> float:
    """Write ``records`` of a send task's size (8-digit key, 229-byte value) to a scratch
    topic in transactions of 50,000, as the fan-out writes; seconds it took."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic as RdNewTopic

    topic = "loa-warmup-scratch"
    admin = AdminClient(client_config(settings))
    for future in admin.create_topics([RdNewTopic(topic, partitions, 1)]).values():
        future.result(timeout=60)
    producer = Producer(
        {
            **client_config(settings),
            "transactional.id": f"loa-warmup-{time.time_ns()}",
            "linger.ms": 5,
            "batch.size": 1_000_000,
        }
    )
    value = b'{"alert_id":"warmup"' + b"x" * 209
    started = time.monotonic()
    producer.init_transactions(60)
    for first in range(0, records, 50_000):
        producer.begin_transaction()
        for i in range(first, min(first + 50_000, records)):
            while True:
                try:
                    producer.produce(topic, value, key=b"%08d" % i, partition=i % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.commit_transaction(120)
    elapsed = time.monotonic() - started
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=60)
    return elapsed


def run_mode(
    mode: Mode,
    n: int,
    port: int,
    workdir: Path,
    profile: Path | None,
    *,
    alerts: int = 2,
    broker_profile: Path | None = None,
) -> dict[str, Any]:
    stack = Stack(mode, workdir / mode.name, port)
    if stack.workdir.exists():
        shutil.rmtree(stack.workdir)
    stack.workdir.mkdir(parents=True)
    result: dict[str, Any] = {"mode": mode.name, "differences": mode.differences()}
    stack.start_broker()
    try:
        stack.loa("init")
        stack.stamp_topics()
        stack.alter_topics(mode.topic_configs)
        stack.agency_key()
        started = time.monotonic()
        stack.loa("directory", "load", "--synthetic", str(n))
        result["directory_load_s"] = time.monotonic() - started
        _say(f"{mode.name}: {n:,} subscribers loaded in {result['directory_load_s']:.1f} s")
        result["ready_s"] = stack.start_worker()
        _say(f"{mode.name}: worker ready in {result['ready_s']:.1f} s")
        if mode.warm_alert:
            ward = registry().ward_codes[0]
            warm_file = stack.workdir / "warm.json"
            warm_file.write_bytes(alert_json(f"W{time.time_ns()}", (ward,), Priority.EXTREME))
            stack.loa(
                "publish",
                str(warm_file),
                "--key",
                str(stack.workdir / "key.key"),
                "--timeout",
                "300",
            )
            time.sleep(2.0)
        if mode.jit_warmup_records:
            result["jit_warmup_s"] = jit_warmup(stack.settings, mode.jit_warmup_records)
            _say(f"{mode.name}: warm-up written in {result['jit_warmup_s']:.1f} s")
        if mode.settle:
            assert stack.worker is not None
            pid = stack.worker.pid
            result["settled_s"] = settle(stack.broker_dir, lambda: proc_stat(pid)[0])
        result["load_before_first"] = os.getloadavg()
        # what the broker did from its start to here: load, restore, log cleaner, JIT
        result["broker_threads_cpu_s_before_first"] = spent_by_thread(
            {}, thread_cpu(stack.broker_pid())
        )
        labels = ["first", "second", *(f"alert{i + 1}" for i in range(2, alerts))]
        done = [national(stack, label, n, profile, broker_profile) for label in labels]
        for a in done:
            _say(
                f"{mode.name}: {a['alert']:<6} {a['per_s']:>11,.0f} tasks/s (broker clock),"
                f" {a['tasks']:,} tasks, exact {a['exact']}, publish -> last"
                f" {a['publish_to_last_task_s']:.1f} s, worker CPU {a['worker_cpu_s']:.1f} s,"
                f" broker CPU {a['broker_cpu_s']:.1f} s"
                f" ({_top(a['broker_threads_cpu_s'])})"
            )
        result["alerts"] = done
        result["first_over_second"] = done[0]["per_s"] / done[1]["per_s"]
        result["first_over_last"] = done[0]["per_s"] / done[-1]["per_s"]
    finally:
        stack.stop_worker()
        stack.stop_broker()
        if stack.broker_dir.exists():
            shutil.rmtree(stack.broker_dir / "data", ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.first_alert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--subscribers", type=lambda s: int(float(s)), default=1_000_000)
    p.add_argument("--modes", default="user,bench", help=f"of {','.join(MODES)}")
    p.add_argument("--port", type=int, default=29792, help="the run's own broker port")
    p.add_argument("--workdir", help="keep logs here (default: a temp dir)")
    p.add_argument("--out", default=str(RESULTS / "first_alert.json"))
    p.add_argument("--profile", help="py-spy raw profiles of the worker per alert, here")
    p.add_argument(
        "--broker-profile",
        help="async-profiler CPU profiles of the broker per alert, here (benchmarks.brokerprofile)",
    )
    p.add_argument(
        "--alerts", type=int, default=2, help="national alerts in a row per mode (at least 2)"
    )
    args = p.parse_args(argv)
    # Ctrl-C and SIGTERM stop the run through its clean-up (workers, then brokers stopped):
    # a background job of a shell starts with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    modes = [MODES[m] for m in args.modes.split(",")]
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    broker_profile = Path(args.broker_profile) if args.broker_profile else None
    if broker_profile is not None:
        broker_profile.mkdir(parents=True, exist_ok=True)
        brokerprofile.library()
    if args.alerts < 2:
        p.error("--alerts: at least 2 (the first and a warm one)")
    with tempfile.TemporaryDirectory(prefix="loa-first-") as tmp:
        workdir = Path(args.workdir or tmp)
        report: dict[str, Any] = {
            "benchmark": "first_alert",
            "command": " ".join(["python -m benchmarks.first_alert", *(argv or sys.argv[1:])]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(),
            "subscribers": args.subscribers,
            "load_before": os.getloadavg(),
            "runs": [
                run_mode(
                    m,
                    args.subscribers,
                    args.port,
                    workdir,
                    profile,
                    alerts=args.alerts,
                    broker_profile=broker_profile,
                )
                for m in modes
            ],
            "load_after": os.getloadavg(),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"first national alert, {report['subscribers']:,} subscribers, load average "
        f"{report['load_before'][0]:.2f} before / {report['load_after'][0]:.2f} after",
        "| mode | first tasks/s | later alerts tasks/s | first / second | first / last | exact |"
        " differences |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for run in report["runs"]:
        first, *later = run["alerts"]
        rates = ", ".join(f"{a['per_s']:,.0f}" for a in later)
        exact = all(a["exact"] for a in run["alerts"])
        lines.append(
            f"| {run['mode']} | {first['per_s']:,.0f} | {rates} |"
            f" {run['first_over_second']:.2f} | {run.get('first_over_last', 0.0):.2f} | {exact} |"
            f" {'; '.join(run['differences'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
