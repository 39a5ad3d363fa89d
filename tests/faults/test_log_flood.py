"""A broker outage is a few log lines a minute, not hundreds a second (issue 20: an idle
worker wrote 115-282 ERROR lines a second while the broker was down)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.kafkaio.clients import init_topics
from streams.logs import REPEAT_WINDOW_S
from streams.settings.model import Settings
from tests.faults.conftest import Workers, kafka, kafka_env

pytestmark = pytest.mark.faults

#: A port of this test's own broker (not the faults' shared OWN_BROKER_PORT: other runs use it).
PORT = 29392


@pytest.fixture
def outage_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = kafka_env(PORT, tmp_path / "kafka")
    try:
        kafka("start", env)
        yield env
    finally:
        kafka("stop", env)


def _problems(log: Path, start: int) -> list[dict[str, str]]:
    """The WARNING and ERROR records written after byte ``start`` (JSON lines)."""
    lines = log.read_bytes()[start:].splitlines()
    docs = [orjson.loads(line) for line in lines if line.startswith(b"{")]
    return [d for d in docs if d.get("level") in ("WARNING", "ERROR", "CRITICAL")]


@pytest.mark.timeout(600)
async def test_an_idle_worker_during_an_outage_writes_each_error_once_a_minute_with_a_count(
    outage_broker: dict[str, str], workers: Workers, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{PORT}",
        topic_prefix=f"flood-{tag}",
        app_id=f"flood-{tag}",
        partitions=2,
        data_dir=str(tmp_path / "data"),
    )
    await init_topics(settings)
    worker = workers.start(settings, "worker", LOA_LOG_FORMAT="json")
    log = worker.log_path
    for _ in range(600):  # bounded: the worker serves its partitions within seconds
        if b"workers: serving partitions" in log.read_bytes():
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"the worker never served:\n{log.read_text()[-3000:]}")
    before = len(log.read_bytes())
    start_problems = len(_problems(log, 0))
    kafka("stop", outage_broker)
    # one whole repeat window and a little: every kind of failure logged once, then its count
    await asyncio.sleep(REPEAT_WINDOW_S + 15)
    problems = _problems(log, before)
    kafka("start", {**outage_broker, "LOA_KAFKA_KEEP_DATA": "1"})
    assert problems, "the outage was not logged at all"
    kinds = {(p["logger"], p["msg"].split(":")[0]) for p in problems}
    # without the limiter: 115-282 lines a second, thousands here
    assert len(problems) <= 4 * len(kinds) + 10, (len(problems), sorted(kinds)[:20])
    assert any("times in the last" in p["msg"] for p in problems), problems[-5:]
    # and no false ERROR at start: Faust's leader topic did not exist when the worker began
    assert not [p for p in _problems(log, 0)[:start_problems] if "__assignor" in p["msg"]]
