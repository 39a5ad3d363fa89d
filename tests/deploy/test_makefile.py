"""`make demo` installs only what the demo runs; `make test` still installs everything (issue 20:
the demo ran the full setup, 183 s on a fresh machine instead of 82 s)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What only the tests and benchmarks use: test tools, the Kafka tools jars, Prometheus (promtool),
#: the Go dashboard linter.
NOT_FOR_THE_DEMO = (
    "'.[dev",
    "benchmarks/kafka-tools.sh",
    "deploy/prometheus/install.sh",
    "deploy/grafana/lint/install.sh",
    "deploy/console/install-chromium.sh",
)


def _plan(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make not found", pytrace=False)
    # -B: every recipe, as on a fresh machine (no stamps); -n: print, run nothing
    out = subprocess.run(
        [make, "-n", "-B", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_demo_installs_loa_and_the_broker_only() -> None:
    plan = _plan("demo")
    assert "pip install --quiet -e .\n" in plan
    assert "deploy/kafka/kafka.sh fetch" in plan
    assert plan.rstrip().endswith("loa demo")
    for step in NOT_FOR_THE_DEMO:
        assert step not in plan, step


def test_make_test_still_installs_everything() -> None:
    plan = _plan("test")
    for step in (*NOT_FOR_THE_DEMO, "deploy/kafka/kafka.sh fetch"):
        assert step in plan, step
