"""Results of ``loa bench`` for people: the JSON file (with machine, versions, settings), the
quick-mode checks, a Markdown table, and matplotlib plots (PNG and SVG)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = None
    import confluent_kafka

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": java,
        "kafka": os.environ.get("LOA_KAFKA_VERSION", "4.4.0"),
        "loa_commit": commit,
        "versions": {
            d: _version(d)
            for d in ("aiokafka", "faust-streaming", "confluent-kafka", "numpy", "orjson")
        }
        | {"librdkafka": confluent_kafka.libversion()[0]},
    }


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system: tasks/s by the broker clock and the ratio to the best peer."""
    rows = [
        {"system": f"peer: {p['peer']}", "per_s": p["per_s"], "own_per_s": p["own_per_s"]}
        for p in result.get("peers", [])
    ]
    best = max((r["per_s"] for r in rows if r["system"] != "peer: faust"), default=0.0)
    fanout = result.get("fanout", [])
    if fanout:
        largest = max(r["subscribers"] for r in fanout)
        for r in fanout:
            if r["subscribers"] == largest and r["workers"] == fanout[0]["workers"]:
                rows.append(
                    {
                        "system": f"Loa {r['label']} ({r['subscribers']:,})",
                        "per_s": r["per_s"],
                        "own_per_s": r["loa_own"]["per_s"],
                    }
                )
    for row in rows:
        row["ratio_to_best_peer"] = row["per_s"] / best if best else None
    return rows


def first_alerts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per directory size and worker count: the first national alert on a just-ready worker
    against the same alert on the warm worker right after (issue 22's goal: >= 0.9)."""
    runs = {(r["subscribers"], r["workers"], r["label"]): r for r in result.get("fanout", [])}
    rows = []
    for (n, workers, label), first in runs.items():
        warm = runs.get((n, workers, "loa"))
        if label != "loa first" or warm is None:
            continue
        rows.append(
            {
                "subscribers": n,
                "workers": workers,
                "first_per_s": first["per_s"],
                "warm_per_s": warm["per_s"],
                "ratio": first["per_s"] / warm["per_s"] if warm["per_s"] else None,
                "first_publish_to_last_s": first["publish_to_last_task_s"],
                "warm_publish_to_last_s": warm["publish_to_last_task_s"],
            }
        )
    return rows


def finish(result: dict[str, Any], out: Path, *, plots: bool) -> dict[str, Any]:
    result = {
        "benchmark": "loa bench",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **result,
    }
    result["summary"] = summary(result)
    result["first_alert"] = first_alerts(result)
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        result["plots"] = [str(p.name) for p in draw(result, out)]
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(result))
    return result


def check(result: dict[str, Any]) -> list[str]:
    """What is missing or inexact: every figure produced, every count exact."""
    problems: list[str] = []
    for run in result.get("fanout", []):
        if not run["exact"]:
            problems.append(f"fan-out {run['label']} {run['subscribers']:,}: counts not exact")
        if not run["per_s"] > 0:
            problems.append(f"fan-out {run['label']}: no broker-clock rate")
    for peer in result.get("peers", []):
        if not peer["exact"] or not peer["per_s"] > 0:
            problems.append(f"peer {peer['peer']}: {peer['broker']['tasks']} of {peer['records']}")
    latency = result.get("latency")
    if latency is not None:
        for name in ("small_alerts", "extreme_during_national"):
            if not latency[name]["exact"] or not latency[name]["first_task_s"]["count"]:
                problems.append(f"latency {name}: counts not exact or nothing measured")
    sustained = result.get("sustained")
    if sustained is not None and (sustained["exact"] is False or not sustained["samples"]):
        problems.append("sustained: counts not exact or no samples")
    return problems


def table(result: dict[str, Any]) -> str:
    lines = [
        "| system | tasks/s (broker clock) | own figure | ratio to best peer |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in result["summary"]:
        ratio = row["ratio_to_best_peer"]
        lines.append(
            f"| {row['system']} | {row['per_s']:,.0f} | {row['own_per_s']:,.0f} |"
            f" {'' if ratio is None else f'{ratio:.2f}'} |"
        )
    for row in result.get("first_alert", []):
        lines.append(
            f"\nfirst national alert on a just-ready worker ({row['subscribers']:,} subscribers,"
            f" {row['workers']} worker(s)): {row['first_per_s']:,.0f} tasks/s,"
            f" {row['ratio']:.2f}x the warm alert right after ({row['warm_per_s']:,.0f}/s);"
            f" publish -> last task {row['first_publish_to_last_s']:.1f} s /"
            f" {row['warm_publish_to_last_s']:.1f} s"
        )
    if result.get("worker_start"):
        lines.append(f"\nbench workers vs `loa worker`: {result['worker_start']}")
    return "\n".join(lines)


def _sustained_detail(sustained: dict[str, Any]) -> str:
    """The sustained run against its burst, and who checked it."""
    broker = sustained.get("per_s_broker_clock")
    ratio = sustained.get("ratio_to_burst")
    parts = []
    if broker:
        parts.append(f" By the broker clock (first to last task's LogAppendTime): {broker:,.0f}/s.")
    if ratio:
        parts.append(
            f" One national alert on the same worker just before: {sustained['burst_per_s']:,.0f}"
            f"/s; sustained / burst = {ratio:.2f}."
        )
    cpu, burst_cpu = sustained.get("cpu", {}), sustained.get("burst_cpu", {})
    for process in ("worker", "broker"):
        if cpu.get(process) and burst_cpu.get(process):
            parts.append(
                f" {process.capitalize()} CPU per task: {cpu[process]['us_per_task']:.2f} µs"
                f" sustained, {burst_cpu[process]['us_per_task']:.2f} µs in the burst."
            )
    exact = sustained.get("exact")
    if exact is None:
        parts.append(" Not counted (the tasks did not fit in the retention; --reader java).")
    else:
        bad = [a for a in sustained.get("per_alert", []) if not a["exact"]]
        parts.append(
            f" Counted by {sustained['counted_by']}:"
            f" {len(sustained.get('per_alert', [])) - len(bad)} of"
            f" {len(sustained.get('per_alert', []))} alerts exact"
            f" (every recipient once, none missed)."
        )
    return "".join(parts)


def markdown(result: dict[str, Any]) -> str:
    """Every table of a run, for the README (``<out>/bench.md``)."""
    m = result["machine"]
    out = [
        f"Run {result['when']}: `{result['command']}`; {m['cpus']} cores,"
        f" {(m['memory_bytes'] or 0) / 2**30:.0f} GiB, Kafka {m['kafka']} single node on the same"
        f" machine, load average {result['load_before'][0]:.1f} before /"
        f" {result['load_after'][0]:.1f} after (shared machine: figures are noisy, ratios are"
        " from the same run).",
        "",
        table(result),
    ]
    fanout = result.get("fanout", [])
    if fanout:
        out += [
            "",
            "| subscribers | workers | run | tasks/s (broker) | Loa's own | exact | publish → first"
            " / last task | restore | directory load | RSS / subscriber | CPU s per worker"
            " | broker CPU s |",
            "| ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for r in fanout:
            cpu = ", ".join(f"{w['cpu_s']:.1f}" for w in r["per_worker"])
            broker_cpu = "" if r["broker_cpu_s"] is None else f"{r['broker_cpu_s']:.1f}"
            out.append(
                f"| {r['subscribers']:,} | {r['workers']} | {r['label']} | {r['per_s']:,.0f} |"
                f" {r['loa_own']['per_s']:,.0f} | {r['broker']['tasks']:,} tasks,"
                f" {r['broker']['duplicates']} dup |"
                f" {r['publish_to_first_task_s'] * 1000:,.0f} ms /"
                f" {r['publish_to_last_task_s']:.1f} s | {r['restore_s']:.1f} s |"
                f" {r['directory_load_per_s']:,.0f}/s |"
                f" {r['rss_bytes_per_subscriber']:,.0f} B | {cpu} | {broker_cpu} |"
            )
    latency = result.get("latency")
    if latency:
        out += [
            "",
            f"| latency, broker clock ({latency['subscribers']:,} subscribers) | alerts | first"
            " task p50 / p95 / p99 | last task p50 / p95 / p99 |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, label in (
            ("small_alerts", "one-ward extreme alert, idle worker"),
            ("extreme_during_national", "one-ward extreme alert during a routine national"),
        ):
            f, last = latency[name]["first_task_s"], latency[name]["last_task_s"]
            out.append(
                f"| {label} | {f['count']} | "
                + " / ".join(f"{f[q] * 1000:,.0f}" for q in ("p50", "p95", "p99"))
                + " ms | "
                + " / ".join(f"{last[q] * 1000:,.0f}" for q in ("p50", "p95", "p99"))
                + " ms |"
            )
        during = latency["extreme_during_national"]
        national = during["national"]
        out.append(
            f"\n{during['finished_before_national']} of {during['first_task_s']['count']} extreme"
            f" alerts were fully out before the routine national alert"
            f" ({national['tasks']:,} tasks over {national['seconds']:.1f} s) finished."
        )
    sustained = result.get("sustained")
    if sustained:
        out.append(
            f"\nSustained: {sustained['alerts']} national alerts of {sustained['subscribers']:,},"
            f" {sustained['tasks']:,} tasks in {sustained['seconds']:.0f} s"
            f" ({sustained['per_s']:,.0f}/s by broker offsets), send topics capped at"
            f" {sustained['retention_bytes'] / 2**20:,.0f} MiB per partition, broker disk at most"
            f" {sustained['broker_disk_max_bytes'] / 2**30:.1f} GiB." + _sustained_detail(sustained)
        )
    return "\n".join(out) + "\n"


def draw(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=110)
            made.append(path)
        plt.close(fig)

    rows = result["summary"]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
        names = [r["system"] for r in rows]
        ax.barh(
            names,
            [r["per_s"] for r in rows],
            color=["#888" if n.startswith("peer") else "#c33" for n in names],
        )
        ax.invert_yaxis()
        ax.set_xlabel("tasks (records) per second, broker LogAppendTime")
        ax.set_title("Loa and its peers, same broker, same record size")
        save(fig, "systems")
    sustained = result.get("sustained")
    if sustained and sustained["samples"]:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        t = [s["t_s"] for s in sustained["samples"]]
        ax.plot(t, [s["per_s"] for s in sustained["samples"]], label="tasks/s")
        ax.set_xlabel("seconds")
        ax.set_ylabel("tasks/s (broker offsets)")
        disk = [s["broker_disk_bytes"] / 2**30 for s in sustained["samples"]]
        if any(disk):
            ax2 = ax.twinx()
            ax2.plot(t, disk, color="#999", linestyle="--", label="broker disk")
            ax2.set_ylabel("broker disk, GiB")
        ax.set_title(f"Sustained: {sustained['tasks']:,} tasks back to back")
        save(fig, "sustained")
    latency = result.get("latency")
    if latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, label in (
            ("small_alerts", "one-ward alert, idle"),
            ("extreme_during_national", "extreme during national"),
        ):
            for key, style in (("first_samples", "-"), ("last_samples", ":")):
                values = sorted(latency[name][key])
                if values:
                    ax.plot(
                        [v * 1000 for v in values],
                        [(i + 1) / len(values) for i in range(len(values))],
                        linestyle=style,
                        label=f"{label}: {'first' if key.startswith('first') else 'last'} task",
                    )
        ax.set_xscale("log")
        ax.set_xlabel("ms after the alert's append on the broker")
        ax.set_ylabel("share of alerts")
        ax.legend(fontsize=8)
        ax.set_title("Publish to task, broker clock")
        save(fig, "latency")
    fanout = [r for r in result.get("fanout", []) if r["label"] == "loa"]
    if len({r["workers"] for r in fanout}) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for n in sorted({r["subscribers"] for r in fanout}):
            points = sorted((r["workers"], r["per_s"]) for r in fanout if r["subscribers"] == n)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{n:,}")
        ax.set_xlabel("worker processes")
        ax.set_ylabel("tasks/s (broker clock)")
        ax.set_xticks(sorted({r["workers"] for r in fanout}))
        ax.legend(title="subscribers")
        ax.set_title(f"Scaling by workers ({result['machine']['cpus']} cores)")
        save(fig, "scaling")
    return made
