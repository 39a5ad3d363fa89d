"""A live Loa on the real broker: topics, a synthetic directory and a worker subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.demo.localrun import WorkerProcess
from streams.demo.oracle import Expected, Rows, expected_audience
from streams.directory.census_replica import CensusReplica
from streams.directory.index import ChangeBatch
from streams.directory.load import load_synthetic
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import encode_subscribers
from streams.ingest.agency_service import ensure_local_key
from streams.ingest.signatures import KeyPair, signature_headers
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.receipts.observe import wait_decision, watch_progress
from streams.records import Progress
from streams.regions import RegionRegistry, registry
from streams.settings.model import Settings
from tests.conftest import drop_topics

SUBSCRIBERS = 40_000
SEED = 11


ROOT = Path(__file__).resolve().parents[2]
TEST_AGENCY = "test.agency.vn"


@dataclass
class LiveLoa:
    settings: Settings
    regions: RegionRegistry
    directory: ChangeBatch
    worker: WorkerProcess
    #: Keys by agency id, registered on the agencies topic (test agency, NCHMF, Quảng Ninh,
    #: Quảng Ngãi).
    keys: dict[str, KeyPair]

    async def publish(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        signed_by: str | None = TEST_AGENCY,
    ) -> int:
        """Send one inbound record, signed by ``signed_by``'s key unless ``headers`` are given
        or ``signed_by`` is None; returns its offset."""
        if headers is None and signed_by is not None and value is not None:
            headers = list(signature_headers(self.keys[signed_by], value))
        producer = make_producer(self.settings)
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                self.settings.inbound_topic, value, key=key, headers=headers
            )
        finally:
            await producer.stop()
        return int(meta.offset)

    async def decision(
        self, sender: str, identifier: str, *, offset: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        return await wait_decision(self.settings, sender, identifier, offset=offset, timeout_s=60)

    async def fanned_out(self, alert_id: str, *, version: int = 1) -> dict[int, Progress]:
        return await watch_progress(self.settings, alert_id, version=version, timeout_s=120)

    async def tasks(
        self, alert_id: str, priority: str
    ) -> tuple[Counter[int], list[dict[str, Any]]]:
        """Recipients with a committed task of ``alert_id`` (with multiplicity), and the tasks."""
        counts: Counter[int] = Counter()
        docs: list[dict[str, Any]] = []
        async for record in read_to_end(self.settings, self.settings.sends_topic(priority)):
            doc = orjson.loads(record.value)
            if doc["alert_id"] != alert_id:
                continue
            assert record.key == b"%d" % doc["recipient_id"]
            counts[doc["recipient_id"]] += 1
            docs.append(doc)
        return counts, docs

    def expected(self, codes: list[str], *, test_only: bool = False) -> set[int]:
        """Who an alert for region ``codes`` must reach, by the independent oracle."""
        doc = {
            "status": "Exercise" if test_only else "Actual",
            "info": [{"area": [{"regions": codes}]}],
        }
        found = self.expected_audience(doc)
        assert not found.maybe  # region codes have no tolerance
        return set(found.sure)

    def expected_audience(self, doc: dict[str, Any]) -> Expected:
        """The oracle's audience of an alert document among the directory's rows as written to
        the changes topic (``streams/demo/oracle.py``: shares no code with the fan-out)."""
        return expected_audience(doc, oracle_rows(self.directory, self.regions))


def oracle_rows(directory: ChangeBatch, regions: RegionRegistry) -> Rows:
    """The directory's change records, decoded, as the oracle's raw rows."""
    return Rows.from_records(
        orjson.loads(value) for _, value in encode_subscribers(directory, regions) if value
    )


async def register_agencies(settings: Settings, key_dir: Path) -> dict[str, KeyPair]:
    """Register the test agency and the three sample agencies, each with a fresh local key."""
    return {
        agency: await ensure_local_key(settings, agency, key_dir, agencies_path=path)
        for agency, path in (
            (TEST_AGENCY, ROOT / "deploy" / "agencies" / "testing"),
            ("nchmf.gov.vn", ROOT / "deploy" / "agencies"),
            ("ubnd.quangninh.gov.vn", ROOT / "deploy" / "agencies"),
            ("pctt.quangngai.gov.vn", ROOT / "deploy" / "agencies"),
        )
    }


@contextlib.asynccontextmanager
async def live_loa(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    subscribers: int = SUBSCRIBERS,
    **worker_env: str,
) -> AsyncIterator[LiveLoa]:
    """Topics of their own, registered agencies, a synthetic directory and a running worker."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"it-{tag}",
        app_id=f"it-{tag}",
        partitions=4,
        data_dir=str(tmp_path_factory.mktemp(f"data-{tag}")),
    )
    regions = registry()
    await create_topics(settings)
    keys = await register_agencies(settings, Path(tmp_path_factory.mktemp("keys")))
    await load_synthetic(settings, subscribers, SEED, regions)
    log_path = Path(tmp_path_factory.mktemp("logs")) / "worker.log"
    # no metrics endpoint unless a test asks for one: two live workers at once (a module's and
    # a test's own) must not both want port 9470 (a busy port stops a worker, exit 78)
    worker_env = {"LOA_METRICS_PORT": "0", **worker_env}
    worker = WorkerProcess(settings, log_path, **worker_env).start()
    try:
        # decisions carry the reach: start once every partition has a census (else the first
        # decisions of a module would say reach_unknown)
        await wait_census(settings, regions)
        yield LiveLoa(
            settings, regions, synthetic_subscribers(subscribers, SEED, regions), worker, keys
        )
    finally:
        worker.stop()
        assert worker.proc is not None
        assert worker.proc.returncode is not None
        drop_topics(kafka_bootstrap, [settings.topic_prefix])


@pytest.fixture(scope="module")
async def live(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveLoa]:
    async with live_loa(kafka_bootstrap, tmp_path_factory) as loa:
        yield loa


async def wait_census(settings: Settings, regions: RegionRegistry, timeout_s: float = 120) -> None:
    """Until the census topic holds a census of every directory partition."""
    replica = CensusReplica(settings, regions)
    await replica.start()
    try:
        async with asyncio.timeout(timeout_s):
            while len(replica.censuses()) < settings.partitions:
                await asyncio.sleep(0.2)
                await replica.ready(timeout_s=10)
    finally:
        await replica.stop()


def alert(identifier: str, regions: list[str], **info: Any) -> dict[str, Any]:
    """A minimal valid Loa JSON alert."""
    block: dict[str, Any] = {
        "language": "vi-VN",
        "category": ["Met"],
        "event": "Lũ quét",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "headline": "Cảnh báo lũ quét",
        "area": [{"areaDesc": "test area", "regions": regions}],
    }
    block.update(info)
    return {
        "identifier": identifier,
        "sender": "test.agency.vn",
        "sent": "2026-11-23T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": [block],
    }


async def run_loa(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the ``loa`` CLI against ``settings``' topics (bounded)."""
    env = {
        **os.environ,
        "LOA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOA_APP_ID": settings.app_id,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_PARTITIONS": str(settings.partitions),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
