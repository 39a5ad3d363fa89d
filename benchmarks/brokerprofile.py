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
        [_jcmd(), str(pid), "JVMTI.agent_load", str(library()), _quoted(options)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or "return code: 0" not in done.stdout:
        raise RuntimeError(f"jcmd JVMTI.agent_load {options}: {done.stdout} {done.stderr}")


def start(pid: int) -> None:
    """Start sampling the broker ``pid``'s threads (CPU time, every :data:`INTERVAL`)."""
    _agent(pid, f"start,event=ctimer,interval={INTERVAL},threads,features=comptask")


def _quoted(options: str) -> str:
    # jcmd reads ``key=value`` words as its own options: a quoted word is passed on as is
    return f'"{options}"'


def stop(pid: int, out: Path) -> None:
    """Stop sampling and write the collapsed stacks to ``out``."""
    _agent(pid, f"stop,file={out},collapsed,ann")


_DIGITS = re.compile(r"[-#\s]*\d+$")


def _thread_kind(frame: str) -> str:
    # "[data-plane-kafk tid=1234]" -> "data-plane-kafk" (names as /proc keeps them: 15 chars)
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


def _java_tier(frames: list[str]) -> str:
    """The compilation tier of the innermost Java frame of a stack (``native/JVM`` if none)."""
    for frame in reversed(frames):
        kind = _frame_type(frame)
        if kind not in ("native/JVM", "kernel"):
            return kind
    return "native/JVM"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Samples per thread kind; per thread kind, the tier of the innermost Java frame
    (interpreted, C1, C2: was the work running in compiled code yet?); the leaf frames of the
    request threads; and the methods the C2 compiler spent its time on."""
    threads: Counter[str] = Counter()
    tiers: dict[str, Counter[str]] = {}
    hot: Counter[str] = Counter()
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
        tiers.setdefault(kind, Counter())[_java_tier(frames[1:])] += n
        if kind.startswith("data-plane-kafka-request-handler"):
            hot[frames[-1]] += n
        if kind.startswith("C2 Compiler"):  # thread names are cut at 15 characters
            task = next((f for f in frames[1:] if "." in f and "::" not in f), "")
            compiled[task or "(other)"] += n
    ms = float(INTERVAL.removesuffix("ms"))

    def seconds(c: Counter[str], k: int = top) -> dict[str, float]:
        return {key: round(v * ms / 1000, 2) for key, v in c.most_common(k)}

    return {
        "samples": total,
        "cpu_s": round(total * ms / 1000, 2),
        "threads_s": seconds(threads),
        "java_tier_by_thread_s": {k: seconds(tiers[k]) for k, _ in threads.most_common(6)},
        "request_handler_leaf_s": seconds(hot, 20),
        "c2_compiling_s": seconds(compiled, 20),
    }
