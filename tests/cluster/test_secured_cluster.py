"""Loa on the secured, replicated cluster: SASL_SSL principals, ACLs, TLS failures, broker loss.

One directory of a million synthetic subscribers and one worker (worker principal) serve every
fan-out here; alerts are signed and published by the agency principal with ``loa publish``; the
operator creates the topics, registers the agencies and loads the directory. Committed tasks are
counted by the tests' own read_committed reader (admin principal).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import TopicPartition
from confluent_kafka import Consumer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from streams.demo.localrun import WorkerProcess
from streams.demo.oracle import ward_matches
from streams.directory.load import load_synthetic
from streams.directory.synthetic import synthetic_subscribers
from streams.ingest.agency_service import ensure_local_key
from streams.ingest.signatures import KeyPair, key_file_stem
from streams.kafkaio.clients import (
    create_topics,
    ensure_decision_topics,
    make_producer,
    read_to_end,
)
from streams.receipts.observe import wait_decision, watch_progress
from streams.records import Progress
from streams.regions import RegionRegistry, registry
from streams.settings.model import Settings
from tests.cluster.conftest import (
    Cluster,
    GapWatch,
    admin_rdkafka,
    describe,
    end_offsets,
    leaders,
    tag,
)
from tests.faults.conftest import committed_recipients, compare
from tests.integration.conftest import ROOT, alert


def _oracle_hit(regions: RegionRegistry, directory: Any, codes: list[str]) -> Any:
    """Rows an alert for ``codes`` must reach, by the independent oracle's rule (code string
    prefixes on the ward codes), not by the fan-out's ward mask."""
    ward = np.asarray(regions.ward_codes, dtype=np.str_)[directory.ward]
    return np.logical_or.reduce([ward_matches(ward, code) for code in codes])


# the first test also waits for the cluster, the 1M directory and the worker to start
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

log = logging.getLogger(__name__)

SUBSCRIBERS = 1_000_000
SEED = 29
PARTITIONS = 6
PREFIX = "loa"
#: ``oa`` tasks/s while a broker is killed: the national fan-out lasts long enough to be hit
THROTTLE = 25_000.0


@dataclass
class Stage:
    cluster: Cluster
    operator: Settings
    worker_settings: Settings
    worker: WorkerProcess
    regions: RegionRegistry
    key: KeyPair
    key_dir: Path
    tmp: Path
    agency: Settings

    def loa(self, user: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """``loa ARGS`` as ``user`` on this stage's topics: exit code and stdout+stderr."""
        full = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            **self.cluster.user_env(user),
            "LOA_TOPIC_PREFIX": PREFIX,
            "LOA_PARTITIONS": str(PARTITIONS),
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, "-m", "streams", *args],
            env=full,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    async def publish(self, identifier: str, regions: list[str]) -> str:
        """A signed alert sent by the agency principal with ``loa publish``; its alert id once
        ingest accepted it (read as the agency: its decision topics)."""
        doc = alert(identifier, regions)
        doc["sender"] = "nchmf.gov.vn"
        path = self.tmp / f"{identifier}.json"
        path.write_bytes(orjson.dumps(doc))
        key_path = self.key_dir / f"{key_file_stem(self.key.key_id)}.key"
        code, out = self.loa("agency", "publish", str(path), "--key", str(key_path), "--no-wait")
        assert code == 0, out
        # generous: the first alert also waits for the worker to join and restore
        outcome, record = await wait_decision(
            self.agency, "nchmf.gov.vn", identifier, timeout_s=600
        )
        assert outcome == "accepted", record
        return str(record["alert_id"])


@pytest.fixture(scope="module")
async def stage(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stage]:
    tmp = tmp_path_factory.mktemp("stage")
    operator = cluster.settings("operator", topic_prefix=PREFIX, partitions=PARTITIONS)
    created = await create_topics(operator)
    assert operator.orders_topic in created
    regions = registry()
    key_dir = tmp / "keys"
    key = await ensure_local_key(
        operator, "nchmf.gov.vn", key_dir, agencies_path=ROOT / "deploy" / "agencies"
    )
    await load_synthetic(operator, SUBSCRIBERS, SEED, regions)
    worker_env = cluster.user_env("worker")
    worker_settings = cluster.settings(
        "worker",
        topic_prefix=PREFIX,
        app_id=f"{PREFIX}-{tag()}",
        partitions=PARTITIONS,
        data_dir=str(tmp / "data"),
    )
    worker = WorkerProcess(
        worker_settings,
        tmp / "worker.log",
        LOA_METRICS_PORT="0",
        LOA_SESSION_TIMEOUT_S="10",
        **worker_env,
    ).start()
    try:
        agency = cluster.settings("agency", topic_prefix=PREFIX, partitions=PARTITIONS)
        yield Stage(cluster, operator, worker_settings, worker, regions, key, key_dir, tmp, agency)
    finally:
        worker.stop()
        for node in sorted(cluster.killed):
            cluster.start_node(node)


def sends_tps() -> list[TopicPartition]:
    return [TopicPartition(f"{PREFIX}.sends.extreme", p) for p in range(PARTITIONS)]


async def fanned_out(stage: Stage, alert_id: str, timeout_s: float = 600) -> dict[int, Progress]:
    return await watch_progress(stage.operator, alert_id, timeout_s=timeout_s)


async def set_rate(stage: Stage, rate: float | None) -> None:
    producer = make_producer(stage.operator)
    await producer.start()
    try:
        value = None if rate is None else orjson.dumps({"rate": rate})
        await producer.send_and_wait(stage.operator.channels_topic, value, key=b"oa")
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- tests


async def test_topics_are_replicated_three_times_with_min_insync_two(stage: Stage) -> None:
    topics = await describe(stage.cluster, [stage.operator.orders_topic])
    assert {len(p["replicas"]) for p in topics[0]["partitions"]} == {3}
    code, out = stage.loa("operator", "topics", "create")
    assert (code, out.strip()) == (0, "created 0 topics")


async def test_signed_alert_over_sasl_ssl_reaches_exactly_its_audience(stage: Stage) -> None:
    regions = ["VN-22", "VN-31"]
    start = await end_offsets(stage.cluster, sends_tps())
    alert_id = await stage.publish(f"E2E-{tag()}", regions)
    progress = await fanned_out(stage, alert_id)
    directory = synthetic_subscribers(SUBSCRIBERS, SEED, stage.regions)
    hit = _oracle_hit(stage.regions, directory, regions)
    expected = directory.ids[hit]
    got = await committed_recipients(
        stage.operator, start, connection=admin_rdkafka(stage.cluster), timeout_s=300
    )
    result = compare(got, expected)
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == len(expected) == sum(p.emitted for p in progress.values())


@pytest.mark.parametrize(
    "command", [["directory", "load", "--synthetic", "10"], ["agencies", "load"]]
)
async def test_agency_principal_cannot_write_directory_or_agencies(
    stage: Stage, command: list[str]
) -> None:
    topic = (
        stage.operator.directory_topic
        if command[0] == "directory"
        else stage.operator.agencies_topic
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS if command[0] == "directory" else 1)]
    before = await end_offsets(stage.cluster, tps)
    code, out = stage.loa("agency", *command)
    assert code == 5  # not authorized
    lines = out.strip().splitlines()
    assert lines[-1].startswith("error: "), out  # exit code 5: not authorized
    assert "Traceback" not in out and len([x for x in lines if x.startswith("error")]) == 1
    assert await end_offsets(stage.cluster, tps) == before


def _described_as(config: dict[str, Any], topic: str) -> str:
    """What the broker tells ``config``'s principal about ``topic`` (librdkafka metadata):
    ``"ok"`` or the error's name."""
    consumer = Consumer({**config, "group.id": f"probe-{tag()}"})
    try:
        found = consumer.list_topics(topic, timeout=30).topics[topic]
        return "ok" if found.error is None else str(found.error.name())
    finally:
        consumer.close()


async def test_agency_principal_reads_its_own_decisions_and_no_others(stage: Stage) -> None:
    # a decision on the agency's alert is on its topic, where `loa publish` (as the agency)
    # finds it: publishing the same file again is a duplicate, exit code 0
    identifier = f"OWN-{tag()}"
    await stage.publish(identifier, ["VN-22"])
    key_path = stage.key_dir / f"{key_file_stem(stage.key.key_id)}.key"
    path = stage.tmp / f"{identifier}.json"
    code, out = stage.loa("agency", "publish", str(path), "--key", str(key_path), "--json")
    assert code == 0, out
    assert orjson.loads(out.strip().splitlines()[-1])["outcome"] == "duplicate", out

    other = "vn-other-agency.gov.vn"
    created = await ensure_decision_topics(stage.operator, [other])
    assert created == [stage.operator.decisions_topic(other)]
    agency = admin_rdkafka(stage.cluster, "agency")
    own = stage.agency.decisions_topic("nchmf.gov.vn")
    refused = [
        stage.agency.accepted_topic,
        stage.agency.rejected_topic,
        stage.agency.decisions_topic(other),
    ]
    answers = {t: await asyncio.to_thread(_described_as, agency, t) for t in [own, *refused]}
    assert answers == {
        own: "ok",
        **dict.fromkeys(refused, "TOPIC_AUTHORIZATION_FAILED"),
    }
    # and read: the agency's own topic holds both decisions on its alert, read as the agency
    mine = [r async for r in read_to_end(stage.agency, own)]
    about = [r for r in mine if identifier.encode() in (r.value or b"")]
    assert len(about) == 2, [r.value for r in about]


def _expired_client_cert(cluster: Cluster, out: Path) -> tuple[Path, Path]:
    """A client certificate for CN=operator signed by the cluster's CA, expired yesterday."""
    ca_key = serialization.load_pem_private_key((cluster.tls / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((cluster.tls / "ca.pem").read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now - timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = out / "expired.pem", out / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_connection_failures_each_give_one_clear_line(stage: Stage, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    await asyncio.to_thread(
        subprocess.run,
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(tmp_path / "other.key"), "-out", str(other_ca), "-subj", "/CN=x"),
        ],
        check=True,
        capture_output=True,
    )
    port = stage.cluster.user_env("operator")["LOA_BOOTSTRAP_SERVERS"].split(",")[0].split(":")[1]
    cert, key = _expired_client_cert(stage.cluster, tmp_path)
    cases = {
        "wrong user name or password": (
            "operator",
            {"LOA_SASL_PASSWORD_FILE": "", "LOA_SASL_PASSWORD": "wrong"},
        ),
        "not signed by a trusted CA": ("operator", {"LOA_SSL_CA_LOCATION": str(other_ca)}),
        "not valid for the host name used": (
            "operator",
            {"LOA_BOOTSTRAP_SERVERS": f"localhost:{port}"},
        ),
        # TLS 1.3: the broker refuses the expired certificate after the handshake
        "the broker closed the connection": (
            "mtls-operator",
            {"LOA_SSL_CERTIFICATE_LOCATION": str(cert), "LOA_SSL_KEY_LOCATION": str(key)},
        ),
    }
    for expected, (user, env) in cases.items():
        code, out = stage.loa(user, "topics", "create", env=env)
        lines = out.strip().splitlines()
        assert code == 4, out  # broker unreachable
        assert len(lines) == 1 and lines[0].startswith("error: cannot connect to Kafka: "), out
        assert expected in lines[0], out


async def test_mtls_principal_is_mapped_from_its_certificate(stage: Stage) -> None:
    code, out = stage.loa("mtls-operator", "topics", "create")
    assert (code, out.strip()) == (0, "created 0 topics")


async def _kill_mid_fanout(stage: Stage, node_of: str) -> None:
    """A national fan-out, throttled; at 10-60 % the chosen node is killed with SIGKILL, then
    the throttle is lifted. The fan-out completes: 0 missing, 0 duplicate (read_committed)."""
    tps = sends_tps()
    start = await end_offsets(stage.cluster, tps)
    await set_rate(stage, THROTTLE)
    alert_id = await stage.publish(f"KILL-{tag()}", ["VN"])

    async def midway() -> None:
        while True:
            done = sum((await end_offsets(stage.cluster, tps)).values()) - sum(start.values())
            if done > SUBSCRIBERS // 10:
                return
            await asyncio.sleep(0.5)

    await asyncio.wait_for(midway(), 300)
    if node_of == "controller":
        node = stage.cluster.active_controller()
    else:
        led = list((await leaders(stage.cluster, tps[0].topic)).values())
        node = max(set(led), key=led.count)
    watch = GapWatch()
    gaps = asyncio.create_task(watch.run(stage.cluster, tps, sum(start.values()) + SUBSCRIBERS))
    try:
        stage.cluster.kill(node)
        await asyncio.sleep(2)
        await set_rate(stage, None)
        progress = await fanned_out(stage, alert_id)
        await asyncio.wait_for(gaps, 300)
    finally:
        if not gaps.done():
            gaps.cancel()
    assert stage.worker.alive
    got = await committed_recipients(
        stage.operator, start, connection=admin_rdkafka(stage.cluster), timeout_s=300
    )
    expected = synthetic_subscribers(SUBSCRIBERS, SEED, stage.regions).ids
    result = compare(got, expected)
    log.warning(
        "killed node %d (%s) mid national fan-out: largest gap between committed tasks %.1f s "
        "(%d samples); read back %s",
        node,
        node_of,
        watch.largest_s,
        watch.samples,
        result,
    )
    (stage.tmp / f"gap-{node_of}.txt").write_text(f"{watch.largest_s:.2f}\n")
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == SUBSCRIBERS == sum(p.emitted for p in progress.values())
    stage.cluster.start_node(node)


async def test_kill_of_the_broker_leading_most_send_partitions_loses_nothing(stage: Stage) -> None:
    await _kill_mid_fanout(stage, "leader")


async def test_kill_of_the_active_controller_loses_nothing(stage: Stage) -> None:
    await _kill_mid_fanout(stage, "controller")


async def test_restarted_broker_rejoins_and_the_next_alert_fans_out(stage: Stage) -> None:
    # the kill tests started their node again on its data; all three replicate again
    async def in_sync() -> None:
        while True:
            (topic,) = await describe(stage.cluster, [tps.topic for tps in sends_tps()[:1]])
            if all(len(p["isr"]) == 3 for p in topic["partitions"]):
                return
            await asyncio.sleep(1)

    await asyncio.wait_for(in_sync(), 120)
    regions = ["VN-48"]
    start = await end_offsets(stage.cluster, sends_tps())
    alert_id = await stage.publish(f"AFTER-{tag()}", regions)
    await fanned_out(stage, alert_id)
    directory = synthetic_subscribers(SUBSCRIBERS, SEED, stage.regions)
    hit = _oracle_hit(stage.regions, directory, regions)
    result = compare(
        await committed_recipients(
            stage.operator, start, connection=admin_rdkafka(stage.cluster), timeout_s=300
        ),
        directory.ids[hit],
    )
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
