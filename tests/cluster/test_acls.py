"""``loa init`` grants the ACLs of the ``LOA_ACL_*`` principals on the secured cluster (issue 20).

The prefixes here do not begin with ``loa``, so nothing ``cluster.sh grant loa`` added at start
covers them: as ``admin``, ``loa init`` creates the ACLs (read back by the tests' own librdkafka
admin client, not Loa's code), a second run creates none, and then the worker, agency and
operator principals do their work on that prefix: the operator registers a key and loads a
directory, the agency publishes a signed alert and reads its decision, the worker ingests it
and fans it out in its transactions. As ``operator`` (no ALTER on the cluster), ``loa init``
creates the topics, says it may not alter ACLs and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.demo.localrun import WorkerProcess
from streams.directory.load import load_synthetic
from streams.ingest.agency_service import ensure_local_key
from streams.ingest.signatures import key_file_stem
from streams.receipts.observe import wait_decision, watch_progress
from streams.regions import registry
from tests.cluster.conftest import Cluster, admin_rdkafka, tag
from tests.integration.conftest import ROOT, alert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

AGENCY = "nchmf.gov.vn"
ACL_ENV = {
    "LOA_ACL_WORKER_PRINCIPAL": "User:worker",
    "LOA_ACL_AGENCY_PRINCIPALS": f"User:agency={AGENCY}",
    "LOA_ACL_OPERATOR_PRINCIPAL": "User:operator",
}
PARTITIONS = 2


def expected_acls(p: str) -> set[str]:
    """What the three principals need on prefix ``p``, written out here (docs/operations.md,
    ACLs), not taken from Loa."""
    return {
        f"User:worker ALL TOPIC {p} PREFIXED",
        f"User:worker ALL GROUP {p} PREFIXED",
        f"User:worker ALL TRANSACTIONAL_ID {p} PREFIXED",
        "User:worker IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL",
        f"User:agency WRITE TOPIC {p}.alerts.inbound LITERAL",
        f"User:agency DESCRIBE TOPIC {p}.alerts.inbound LITERAL",
        f"User:agency READ TOPIC {p}.decisions.{AGENCY} LITERAL",
        "User:agency IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL",
        f"User:operator ALL TOPIC {p} PREFIXED",
        f"User:operator ALL GROUP {p} PREFIXED",
        f"User:operator ALL TRANSACTIONAL_ID {p}-deliver PREFIXED",
        "User:operator DESCRIBE CLUSTER kafka-cluster LITERAL",
        "User:operator IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL",
    }


def _acls_on_cluster(cluster: Cluster) -> set[str]:
    """Every ALLOW ACL (any host) the brokers hold, read with librdkafka as ``admin``."""
    admin = AdminClient(admin_rdkafka(cluster))
    every = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found = admin.describe_acls(every, request_timeout=60).result()
    # librdkafka names Kafka's CLUSTER resource type (4) BROKER
    kind = {"BROKER": "CLUSTER"}
    return {
        f"{b.principal} {b.operation.name} {kind.get(b.restype.name, b.restype.name)} {b.name} "
        f"{b.resource_pattern_type.name}"
        for b in found
        if b.host == "*" and b.permission_type.name == "ALLOW"
    }


async def acls_on_cluster(cluster: Cluster) -> set[str]:
    return await asyncio.to_thread(_acls_on_cluster, cluster)


def _on(prefix: str, acls: set[str]) -> set[str]:
    """The ACLs on resources named after ``prefix`` (the cluster resource's are shared)."""
    return {a for a in acls if a.split()[3].startswith(prefix)}


def loa(
    cluster: Cluster, user: str, prefix: str, *args: str, cwd: Path, **env: str
) -> tuple[int, str]:
    """``loa ARGS`` as ``user`` on ``prefix``'s topics: exit code and stdout+stderr."""
    full = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        **cluster.user_env(user),
        "LOA_TOPIC_PREFIX": prefix,
        "LOA_APP_ID": f"{prefix}-w",
        "LOA_PARTITIONS": str(PARTITIONS),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@dataclass
class Granted:
    prefix: str
    before: set[str]
    first: tuple[int, str]
    tmp: Path


@pytest.fixture(scope="module")
async def granted(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Granted]:
    """A new prefix (not under ``loa``), and ``loa init`` run once on it as ``admin``."""
    tmp = tmp_path_factory.mktemp("acls")
    prefix = f"acl{tag()}"
    before = await acls_on_cluster(cluster)
    first = await asyncio.to_thread(loa, cluster, "admin", prefix, "init", cwd=tmp, **ACL_ENV)
    yield Granted(prefix, before, first, tmp)


async def test_init_as_admin_creates_the_missing_acls_and_a_second_run_creates_none(
    cluster: Cluster, granted: Granted
) -> None:
    p = granted.prefix
    assert _on(p, granted.before) == set()  # cluster.sh granted nothing on this prefix
    code, out = granted.first
    assert code == 0, out
    # the cluster-wide ACLs were there already (cluster.sh grant loa): present, not created
    shared = {a for a in expected_acls(p) if " CLUSTER " in a}
    assert shared <= granted.before
    assert "acls: 9 created, 4 present" in out, out
    created = {line.split("created: ", 1)[1] for line in out.splitlines() if "  created: " in line}
    assert created == expected_acls(p) - shared
    now = await acls_on_cluster(cluster)
    assert expected_acls(p) <= now
    assert _on(p, now) == {a for a in expected_acls(p) if a not in shared}

    code, out = await asyncio.to_thread(
        loa, cluster, "admin", p, "init", cwd=granted.tmp, **ACL_ENV
    )
    assert code == 0, out
    assert "acls: 0 created, 13 present" in out, out
    assert "created:" not in out
    assert await acls_on_cluster(cluster) == now


async def test_worker_agency_and_operator_work_on_a_prefix_granted_only_by_loa_init(
    cluster: Cluster, granted: Granted
) -> None:
    assert granted.first[0] == 0, granted.first[1]
    p, tmp = granted.prefix, granted.tmp
    operator = cluster.settings("operator", topic_prefix=p, partitions=PARTITIONS)
    # the operator's grants: register a signing key, load a small directory
    key_dir = tmp / "keys"
    key = await ensure_local_key(
        operator, AGENCY, key_dir, agencies_path=ROOT / "deploy" / "agencies"
    )
    regions = registry()
    await load_synthetic(operator, 2_000, 7, regions)
    # the worker's grants: ingest and fan out, in its transactions, on this prefix only
    worker_env = cluster.user_env("worker")
    worker_settings = cluster.settings(
        "worker",
        topic_prefix=p,
        app_id=f"{p}-w",
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
        # the agency's grants: write the inbound topic, read its own decision topic
        identifier = f"ACL-{tag()}"
        doc = alert(identifier, ["VN"])
        doc["sender"] = AGENCY
        path = tmp / f"{identifier}.json"
        path.write_bytes(orjson.dumps(doc))
        key_path = key_dir / f"{key_file_stem(key.key_id)}.key"
        code, out = await asyncio.to_thread(
            loa, cluster, "agency", p, "publish", str(path), "--key", str(key_path),
            "--no-wait", cwd=tmp,
        )  # fmt: skip
        assert code == 0, out
        agency = cluster.settings("agency", topic_prefix=p, partitions=PARTITIONS)
        outcome, record = await wait_decision(agency, AGENCY, identifier, timeout_s=600)
        assert outcome == "accepted", record
        progress = await watch_progress(operator, str(record["alert_id"]), timeout_s=600)
        assert sum(pr.emitted for pr in progress.values()) == 2_000
        assert worker.alive
    finally:
        worker.stop()


async def test_init_as_operator_says_it_may_not_alter_acls_and_exits_0(
    cluster: Cluster, tmp_path: Path
) -> None:
    p = f"loa-acl{tag()}"  # the operator's own grant (loa PREFIXED) lets it make these topics
    before = await acls_on_cluster(cluster)
    code, out = await asyncio.to_thread(
        loa, cluster, "operator", p, "init", cwd=tmp_path, **ACL_ENV
    )
    assert code == 0, out
    assert "topics: " in out and " created, 0 checked" in out, out
    [line] = [x for x in out.splitlines() if x.startswith("acls:")]
    assert line.startswith(
        "acls: User:operator may not alter ACLs; "
        "run deploy/kafka/cluster.sh grant or ask the cluster admin ("
    ), out
    assert "9 missing, 4 present" in line, out
    assert f"{AGENCY}: loaded" in out  # the agencies were still done
    assert await acls_on_cluster(cluster) == before


async def test_init_as_agency_says_it_may_not_describe_acls_and_names_what_is_wanted(
    cluster: Cluster, granted: Granted
) -> None:
    code, out = await asyncio.to_thread(
        loa, cluster, "agency", granted.prefix, "init", "--no-agencies", cwd=granted.tmp, **ACL_ENV
    )
    assert code == 0, out
    lines = out.splitlines()
    [line] = [x for x in lines if x.startswith("acls:")]
    assert line == (
        "acls: User:agency may not describe ACLs; "
        "run deploy/kafka/cluster.sh grant or ask the cluster admin (13 wanted)"
    ), out
    wanted = {x.split("wanted: ", 1)[1] for x in lines if x.startswith("  wanted: ")}
    assert wanted == expected_acls(granted.prefix)
