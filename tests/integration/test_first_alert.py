"""``python -m benchmarks.first_alert`` end to end at a small size: each mode starts its own
broker, loads the directory and runs ``loa worker`` as a user does, and both national alerts
of each mode are counted exactly by the independent reader. Rates are produced, never judged
here (speed is for the benchmark run itself)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUBSCRIBERS = 20_000


def _free_port_pair() -> int:
    """A port whose successor (the broker's KRaft controller port) is free too."""
    for _ in range(50):
        port = random.randrange(30_000, 39_000, 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for the test's broker")


@pytest.mark.timeout(600)
def test_first_alert_counts_both_alerts_of_each_mode_exactly(tmp_path: Path) -> None:
    out = tmp_path / "first_alert.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.first_alert",
            "--subscribers",
            str(SUBSCRIBERS),
            "--modes",
            "user,bench",
            "--port",
            str(_free_port_pair()),
            "--workdir",
            str(tmp_path / "wd"),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [run["mode"] for run in report["runs"]] == ["user", "bench"]
    user, bench = report["runs"]
    assert user["differences"] == ["none: the documented defaults"]
    assert "LOA_LOG_LEVEL=WARNING" in bench["differences"]
    for run in report["runs"]:
        assert [a["alert"] for a in run["alerts"]] == ["first", "second"]
        for alert in run["alerts"]:
            assert alert["tasks"] == alert["distinct"] == SUBSCRIBERS, alert
            assert alert["duplicates"] == 0 and alert["exact"]
            assert alert["per_s"] > 0 and alert["publish_to_last_task_s"] > 0
        assert run["first_over_second"] > 0
        assert run["ready_s"] > 0 and run["directory_load_s"] > 0
    assert "| user |" in proc.stdout and "| bench |" in proc.stdout
    # each mode stopped its broker: nothing listens on the data dirs' pid files any more
    for run in ("user", "bench"):
        pid_file = tmp_path / "wd" / run / "kafka" / "kafka.pid"
        assert not pid_file.exists() or not Path(f"/proc/{pid_file.read_text().strip()}").exists()
