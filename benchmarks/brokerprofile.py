"""CPU profiles of the broker's JVM during one alert: async-profiler, attached with ``jcmd``.

Issue 22 asks which part of a fresh broker pays for the first national alert. Thread CPU from
``/proc`` (:func:`benchmarks.harness.thread_cpu`) says how much the request threads and the JIT
compilers spent; this says on what: per thread kind, how much of the request threads' time ran
in interpreted, C1-compiled or C2-compiled Java, in the JVM itself, and which methods the C2
compiler spent its time on (async-profiler's ``comptask`` feature).

async-profiler comes from Maven Central (``tools.profiler:async-profiler:<version>``, the
``linux-x64`` jar holds ``libasyncProfiler.so``), checked against the repository's SHA-1 and
kept in ``~/.cache/loa/async-profiler/``. It is loaded into the running broker with ``jcmd
<pid> JVMTI.agent_load`` (no restart, no flag at the broker's start), samples with
``event=ctimer`` (per-thread CPU timers: no perf_events needed) and writes collapsed stacks
with thread names and frame types (``_[0]`` interpreted, ``_[1]`` C1, ``_[j]`` C2, ``_[i]``
inlined), which :func:`summarize` reads. Nothing here is part of Loa.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

VERSION = "4.2"
_JAR = f"async-profiler-{VERSION}-linux-x64.jar"
_URL = f"https://repo1.maven.org/maven2/tools/profiler/async-profiler/{VERSION}/{_JAR}"
CACHE = Path.home() / ".cache" / "loa" / "async-profiler" / VERSION

#: sampling interval of the CPU timer
INTERVAL = "1ms"


def library() -> Path:
    """``libasyncProfiler.so``, fetched from Maven Central once (SHA-1 checked)."""
    lib = CACHE / "linux-x64" / "libasyncProfiler.so"
    if lib.exists():
        return lib
    CACHE.mkdir(parents=True, exist_ok=True)
    jar = CACHE / _JAR
    with urllib.request.urlopen(_URL, timeout=120) as answer:
        data = answer.read()
    with urllib.request.urlopen(_URL + ".sha1", timeout=60) as answer:
        want = answer.read().decode().split()[0].strip()
    got = hashlib.sha1(data).hexdigest()  # Maven Central publishes SHA-1
    if got != want:
        raise RuntimeError(f"{_URL}: SHA-1 {got}, Maven Central says {want}")
    jar.write_bytes(data)
    with zipfile.ZipFile(jar) as z:
        z.extract("linux-x64/libasyncProfiler.so", CACHE)
    return lib


def _jcmd() -> str:
    found = shutil.which("jcmd")
    if found:
        return found
    java = shutil.which("java")
    if java:
        beside = Path(java).resolve().parent / "jcmd"
        if beside.exists():
            return str(beside)
    raise RuntimeError("jcmd not found (a JDK 17's bin/ on PATH)")


def _agent(pid: int, options: str) -> None:
    done = subprocess.run(
        [_jcmd(), str(pid), "JVMTI.agent_load", str(library()), options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise RuntimeError(f"jcmd JVMTI.agent_load {options}: {done.stdout} {done.stderr}")


def start(pid: int) -> None:
    """Start sampling the broker ``pid``'s threads (CPU time, every :data:`INTERVAL`)."""
    _agent(pid, f"start,event=ctimer,interval={INTERVAL},threads,ann,features=comptask")


def stop(pid: int, out: Path) -> None:
    """Stop sampling and write the collapsed stacks to ``out``."""
    _agent(pid, f"stop,file={out},collapsed")


_DIGITS = re.compile(r"[-#\s]*\d+$")


def _thread_kind(frame: str) -> str:
    # "[data-plane-kafka-request-handler-3 tid=1234]" -> "data-plane-kafka-request-handler"
    name = frame.strip("[]").split(" tid=")[0]
    return _DIGITS.sub("", name)


def _frame_type(frame: str) -> str:
    if frame.endswith("_[0]"):
        return "interpreted"
    if frame.endswith("_[1]"):
        return "C1"
    if frame.endswith(("_[j]", "_[i]")):
        return "C2"
    if frame.endswith("_[k]"):
        return "kernel"
    return "native/JVM"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Samples per thread kind; for the request threads, by the type of the frame on top; for
    the C2 compiler, the methods it compiled longest."""
    threads: Counter[str] = Counter()
    leaf: dict[str, Counter[str]] = {}
    compiled: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        kind = _thread_kind(frames[0]) if frames[0].startswith("[") else "?"
        total += n
        threads[kind] += n
        leaf.setdefault(kind, Counter())[_frame_type(frames[-1])] += n
        if kind.startswith("C2 CompilerThread"):
            task = next((f for f in frames[1:] if "." in f and "::" not in f), "")
            compiled[task.removesuffix("_[j]").removesuffix("_[0]") or "(other)"] += n
    ms = float(INTERVAL.removesuffix("ms"))
    return {
        "samples": total,
        "cpu_s": round(total * ms / 1000, 2),
        "threads_s": {k: round(v * ms / 1000, 2) for k, v in threads.most_common(top)},
        "top_frame_by_thread_s": {
            k: {t: round(v * ms / 1000, 2) for t, v in leaf[k].most_common()}
            for k, _ in threads.most_common(6)
        },
        "c2_compiling_s": {k: round(v * ms / 1000, 2) for k, v in compiled.most_common(top)},
    }
