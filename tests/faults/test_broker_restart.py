"""The broker stopped and started again (data kept) in the middle of a fan-out.

A broker of this test's own (``kafka.sh`` on a port of the fault tests' range, its run dir under
the test's tmp dir), so the session broker the other tests share is never bounced. The worker
lives through the outage (it may log errors) and finishes: exactly once as in the kill tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from streams.records import Progress
from tests.faults.conftest import (
    OWN_BROKER_PORT,
    Workers,
    emitted_share,
    kafka,
    make_stage,
    publish_national,
    read_back,
    sends_end,
    set_channel_rate,
    wait_done,
    wait_progress,
)

pytestmark = pytest.mark.faults

log = logging.getLogger(__name__)

PORT = OWN_BROKER_PORT
SUBSCRIBERS = 200_000
#: ``oa`` tasks/s while the outage is prepared: about 15 s for the whole fan-out.
THROTTLE = 10_000.0
#: How long the broker stays down: longer than a request retry, shorter than any give-up.
OUTAGE_S = 5.0


@pytest.mark.timeout(900)  # two broker starts of its own: slow on a loaded machine
async def test_broker_restart_mid_fanout_finishes_with_nothing_lost(
    own_broker: dict[str, str], workers: Workers, tmp_path: Path
) -> None:
    stage = await make_stage(f"127.0.0.1:{PORT}", tmp_path, SUBSCRIBERS)
    settings = stage.app("bounce")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    worker = workers.start(settings, "worker")
    alert_id = await publish_national(stage, worker)

    def midway(latest: dict[int, Progress]) -> bool:
        return 0.10 < emitted_share(SUBSCRIBERS)(latest) < 0.60

    before = await wait_progress(settings, alert_id, midway, timeout_s=120)
    started = time.monotonic()
    kafka("stop", own_broker)
    await asyncio.sleep(OUTAGE_S)
    kafka("start", {**own_broker, "LOA_KAFKA_KEEP_DATA": "1"})
    back = time.monotonic()
    assert worker.alive

    await set_channel_rate(settings, "oa", None)
    final = await wait_done(settings, alert_id)
    assert worker.alive
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS

    result = await read_back(stage, settings, start)
    log.warning(
        "broker down %.1f s after %d committed tasks; read back %s",
        back - started,
        sum(p.emitted for p in before.values()),
        result,
    )
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == SUBSCRIBERS


@pytest.mark.timeout(900)  # two broker starts of its own: slow on a loaded machine
async def test_sigterm_with_the_broker_unreachable_stops_within_the_shutdown_timeout(
    own_broker: dict[str, str], workers: Workers, tmp_path: Path
) -> None:
    """SIGTERM while the broker is down: the worker cannot abort its open transaction or leave
    its group, and still exits (``LOA_SHUTDOWN_TIMEOUT_S``); the next worker, once the broker
    is back, fences what it left open and finishes exactly once."""
    stage = await make_stage(f"127.0.0.1:{PORT}", tmp_path, SUBSCRIBERS)
    settings = stage.app("shutdown")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    worker = workers.start(settings, "worker", LOA_SHUTDOWN_TIMEOUT_S="5")
    alert_id = await publish_national(stage, worker)

    def midway(latest: dict[int, Progress]) -> bool:
        return 0.10 < emitted_share(SUBSCRIBERS)(latest) < 0.60

    await wait_progress(settings, alert_id, midway, timeout_s=120)
    kafka("stop", own_broker)
    assert worker.proc is not None
    stopping = time.monotonic()
    worker.stop(timeout_s=60)  # SIGTERM; stop() would SIGKILL only after 60 s
    took = time.monotonic() - stopping
    exited_by_itself = worker.proc.returncode != -9
    kafka("start", {**own_broker, "LOA_KAFKA_KEEP_DATA": "1"})
    code = worker.proc.returncode
    log.warning("SIGTERM with the broker down: exited after %.1f s, code %s", took, code)
    assert exited_by_itself, "the worker had to be killed: its stop is not bounded"

    await set_channel_rate(settings, "oa", None)
    workers.start(settings, "worker")
    final = await wait_done(settings, alert_id)
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS
    result = await read_back(stage, settings, start)
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
