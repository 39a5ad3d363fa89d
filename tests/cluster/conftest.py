"""The secured 3-broker cluster of ``deploy/kafka/cluster.sh``, started once for these tests.

Loa's processes connect as the worker, agency and operator principals with the settings the
script prints (SASL_SSL + SCRAM-SHA-512). The tests' own readers connect as ``admin`` with an
SSL context and options they build themselves, sharing no code with Loa's client factories.
Every broker the session starts is stopped at its end; a node a test killed is started again.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.settings.load import load_settings
from streams.settings.model import Settings

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "deploy" / "kafka" / "cluster.sh"
#: first of the nine ports of the test cluster (LOA_CLUSTER_PORT); override for parallel runs
PORT = int(os.environ.get("LOA_TEST_CLUSTER_PORT", "19402"))


@dataclass
class Cluster:
    run_dir: Path
    env: dict[str, str]
    killed: set[int] = field(default_factory=set)

    def script(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"cluster.sh {args}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def user_env(self, user: str) -> dict[str, str]:
        """``LOA_*`` connection settings of ``user`` (``mtls-<user>`` for mTLS)."""
        return dict(line.split("=", 1) for line in self.script("env", user).split())

    def settings(self, user: str, **overrides: Any) -> Settings:
        return load_settings(self.user_env(user), **overrides)

    @property
    def tls(self) -> Path:
        return self.run_dir / "tls"

    def kill(self, node: int) -> None:
        self.script("kill", str(node))
        self.killed.add(node)

    def start_node(self, node: int) -> None:
        # after kill -9 the node recovers its logs first: minutes on a loaded machine
        self.script("start-node", str(node), timeout=900)
        self.killed.discard(node)

    def active_controller(self) -> int:
        """The node whose Raft client last completed a transition to Leader (combined nodes:
        the KRaft quorum's active controller), from the nodes' own logs."""
        latest: dict[int, str] = {}
        for node in (1, 2, 3):
            log = (self.run_dir / f"node-{node}" / "broker.log").read_text(errors="replace")
            found = re.findall(r"Completed transition to (\w+)\(", log)
            if found:
                latest[node] = found[-1]
        leaders = [n for n, state in latest.items() if state == "Leader"]
        assert len(leaders) == 1, latest
        return leaders[0]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run_dir = tmp_path_factory.mktemp("cluster") / "run"
    env = {
        **os.environ,
        "LOA_CLUSTER_PORT": str(PORT),
        "LOA_CLUSTER_DIR": str(run_dir),
        "LOA_CLUSTER_START_TIMEOUT": os.environ.get("LOA_CLUSTER_START_TIMEOUT", "600"),
    }
    started = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start"], env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], env=env, capture_output=True)
        pytest.fail(f"the cluster did not start:\n{started.stderr}", pytrace=False)
    try:
        yield Cluster(run_dir, env)
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], env=env, capture_output=True)


# --------------------------------------------------------------------------- the tests' readers


def admin_options(cluster: Cluster) -> dict[str, Any]:
    """aiokafka options of the ``admin`` super user, built here (not by Loa)."""
    env = cluster.user_env("admin")
    context = ssl.create_default_context(cafile=env["LOA_SSL_CA_LOCATION"])
    return {
        "bootstrap_servers": env["LOA_BOOTSTRAP_SERVERS"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "admin",
        "sasl_plain_password": Path(env["LOA_SASL_PASSWORD_FILE"]).read_text().strip(),
        "ssl_context": context,
    }


def admin_rdkafka(cluster: Cluster, user: str = "admin") -> dict[str, Any]:
    """The same ``admin`` connection (or ``user``'s) as librdkafka options (the independent
    read-back, and the ACL probes)."""
    env = cluster.user_env(user)
    return {
        "bootstrap.servers": env["LOA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": Path(env["LOA_SASL_PASSWORD_FILE"]).read_text().strip(),
        "ssl.ca.location": env["LOA_SSL_CA_LOCATION"],
    }


async def describe(cluster: Cluster, topics: list[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(**admin_options(cluster))
    await admin.start()
    try:
        return list(await admin.describe_topics(topics))
    finally:
        await admin.close()


async def leaders(cluster: Cluster, topic: str) -> dict[int, int]:
    """Partition -> leader node of ``topic``."""
    (found,) = await describe(cluster, [topic])
    return {p["partition"]: p["leader"] for p in found["partitions"]}


async def end_offsets(cluster: Cluster, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Last stable offsets (read_committed end offsets)."""
    consumer = AIOKafkaConsumer(**admin_options(cluster), isolation_level="read_committed")
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


@dataclass
class GapWatch:
    """Largest time between two increases of the committed (read_committed) end offsets of the
    send-task topic, sampled every ``every_s`` by an independent consumer: the stall of the
    fan-out as a reader of committed tasks sees it."""

    largest_s: float = 0.0
    samples: int = 0

    async def run(
        self,
        cluster: Cluster,
        tps: list[TopicPartition],
        until_total: int,
        *,
        every_s: float = 0.25,
        timeout_s: float = 600.0,
    ) -> None:
        consumer = AIOKafkaConsumer(**admin_options(cluster), isolation_level="read_committed")
        await consumer.start()
        try:
            last_total, last_change = -1, time.monotonic()
            deadline = last_change + timeout_s
            while time.monotonic() < deadline:
                try:
                    ends = await asyncio.wait_for(consumer.end_offsets(tps), 30)
                except (TimeoutError, Exception):  # a dead leader: keep sampling the others
                    await asyncio.sleep(every_s)
                    continue
                now = time.monotonic()
                total = sum(ends.values())
                self.samples += 1
                if total != last_total:
                    if last_total >= 0:
                        self.largest_s = max(self.largest_s, now - last_change)
                    last_total, last_change = total, now
                if total >= until_total:
                    return
                await asyncio.sleep(every_s)
        finally:
            await consumer.stop()


def tag() -> str:
    return uuid.uuid4().hex[:8]
