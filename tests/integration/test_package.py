"""The built wheel, installed in a new virtualenv outside the checkout, runs Loa end to end.

Nothing of the checkout is on that interpreter's path: the worker finds the schemas and the
default agency files as package data. The count is by an independent read_committed reader.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.cli.main import COMMANDS
from streams.demo.oracle import expected_audience
from streams.directory.synthetic import synthetic_subscribers
from streams.kafkaio.clients import read_to_end
from streams.regions import registry
from streams.settings.model import Settings
from tests.integration.conftest import ROOT, alert, oracle_rows

SUBSCRIBERS = 3_000
SEED = 5
REGIONS = ["VN-22", "VN-01"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``loa`` from the wheel, in a fresh venv in a temporary directory."""
    home = tmp_path_factory.mktemp("installed")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(home))}
    # a copy of what the wheel is built from, so the build leaves nothing in the checkout
    source = home / "source"
    for part in ("pyproject.toml", "README.md", "streams", "schemas", "deploy/agencies"):
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part, symlinks=True)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / part, source / part)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", str(source)],
        home,
        env,
    )
    (wheel,) = (home / "dist").glob("loa-*.whl")
    _run([sys.executable, "-m", "venv", "venv"], home, env)
    _run([str(home / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], home, env, 900)
    return home


async def _tasks(settings: Settings, alert_id: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    async for record in read_to_end(settings, settings.sends_topic("extreme")):
        task = orjson.loads(record.value)
        if task["alert_id"] == alert_id:
            counts[task["recipient_id"]] += 1
    return counts


@pytest.mark.timeout(1500)
def test_installed_wheel_accepts_and_fans_out_outside_the_checkout(
    installed: Path, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"pkg-{tag}", app_id=f"pkg-{tag}"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(installed),
        "LOA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_APP_ID": settings.app_id,
        "LOA_PARTITIONS": str(settings.partitions),
        "LOA_DATA_DIR": str(installed / f"data-{tag}"),
        "LOA_METRICS_PORT": "0",
    }
    loa = str(installed / "venv" / "bin" / "loa")
    python = str(installed / "venv" / "bin" / "python")
    where = _run([python, "-c", "import streams; print(streams.__file__)"], installed, env)
    assert not Path(where.strip()).is_relative_to(ROOT)
    assert _run([loa, "--version"], installed, env).strip() == "loa, version 0.1.0"
    for command in set(COMMANDS) - {"bench"}:  # each command's module imports from the wheel
        assert "Usage: loa" in _run([loa, command, "--help"], installed, env)
    # the benchmarks are not in the wheel: loa bench says where they are instead of failing
    bench = subprocess.run(
        [loa, "bench"], cwd=installed, env=env, capture_output=True, text=True, check=False
    )
    assert bench.returncode == 2 and "source checkout" in bench.stderr, bench.stderr
    assert "Traceback" not in bench.stderr
    # nor the demo and its tools (the oracle, the local processes): loa demo says so
    where_demo = _run(
        [python, "-c", "import importlib.util; print(importlib.util.find_spec('streams.demo'))"],
        installed,
        env,
    )
    assert where_demo.strip() == "None"
    demo = subprocess.run(
        [loa, "demo"], cwd=installed, env=env, capture_output=True, text=True, check=False
    )
    assert demo.returncode == 2 and "source checkout" in demo.stderr, demo.stderr

    _run(
        [loa, "keys", "new", "--agency", "nchmf.gov.vn", "--key-id", "k1", "--out", "keys"],
        installed,
        env,
    )
    # no path: the default agency files shipped in the wheel
    loaded = _run([loa, "agencies", "load", "--key", "keys/k1.pub.json"], installed, env)
    assert "nchmf.gov.vn (1 keys)" in loaded
    _run(
        [loa, "directory", "load", "--synthetic", str(SUBSCRIBERS), "--seed", str(SEED)],
        installed,
        env,
    )
    alert_file = installed / f"{tag}.json"
    doc = alert(f"PKG-{tag}", REGIONS)
    doc["sender"] = "nchmf.gov.vn"
    alert_file.write_bytes(orjson.dumps(doc))

    log = (installed / f"worker-{tag}.log").open("wb")
    worker = subprocess.Popen(
        [loa, "worker"],
        cwd=installed,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        published = _run([loa, "publish", alert_file.name, "--key", "keys/k1.key"], installed, env)
        assert published.startswith("accepted "), published
        alert_id = published.split(" as ")[1].split()[0]
        watched = _run([loa, "watch", alert_id, "--timeout", "300"], installed, env)
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()

    regions = registry()
    directory = synthetic_subscribers(SUBSCRIBERS, SEED, regions)
    # the independent oracle (string prefixes of the official codes), not the fan-out's masks
    audience = expected_audience(
        {"status": "Actual", "info": [{"area": [{"regions": REGIONS}]}]},
        oracle_rows(directory, regions),
    )
    expected = set(audience.sure)
    counts = asyncio.run(_tasks(settings, alert_id))
    assert watched.strip() == (
        f"{alert_id} v1: targeted {len(expected):,}, emitted {len(expected):,}"
    )
    assert set(counts) == expected and len(expected) > 0
    assert max(counts.values()) == 1
