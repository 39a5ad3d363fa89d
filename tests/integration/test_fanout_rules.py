"""Fan-out rules on the real broker: priority preemption and live channel throttles."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest

from streams.kafkaio.clients import make_producer, read_to_end
from streams.records import Progress
from tests.integration.conftest import LiveLoa, alert, live_loa

pytestmark = pytest.mark.integration

CHUNK = 200


@pytest.fixture(scope="module")
async def slow(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveLoa]:
    """A worker with small chunks, one at a time: a national fan-out takes a few seconds."""
    async with live_loa(
        kafka_bootstrap, tmp_path_factory, LOA_FANOUT_CHUNK=str(CHUNK), LOA_FANOUT_PARALLEL="1"
    ) as loa:
        yield loa


async def _progress(live: LiveLoa, alert_id: str) -> dict[int, Progress]:
    latest: dict[int, Progress] = {}
    prefix = f"{alert_id}:1:".encode()
    async for record in read_to_end(live.settings, live.settings.progress_topic):
        if record.value is not None and (record.key or b"").startswith(prefix):
            progress = Progress.from_json(record.value)
            latest[progress.partition] = progress
    return latest


async def test_extreme_alert_preempts_a_routine_national_fanout(slow: LiveLoa) -> None:
    run = uuid.uuid4().hex[:6]
    routine = alert(f"R-{run}", ["VN"], severity="Moderate", urgency="Expected")
    await slow.publish(orjson.dumps(routine))
    routine_id = f"test.agency.vn/R-{run}"
    for _ in range(600):  # until the routine fan-out is under way (bounded)
        seen = await _progress(slow, routine_id)
        if sum(p.emitted for p in seen.values()) > 0:
            break
        await asyncio.sleep(0.05)
    await slow.publish(orjson.dumps(alert(f"X-{run}", ["VN-22"])))
    extreme_id = f"test.agency.vn/X-{run}"
    extreme = await slow.fanned_out(extreme_id)
    snapshot = await _progress(slow, routine_id)
    routine_done = await slow.fanned_out(routine_id)
    # the routine order was still running when the extreme one had finished everywhere...
    assert sum(p.emitted for p in snapshot.values()) < sum(
        p.targeted for p in routine_done.values()
    )
    # ...and on every partition the extreme order finished before the routine one
    for p, done in extreme.items():
        assert done.finished_at is not None
        assert done.finished_at <= (routine_done[p].finished_at or 0.0)
    counts, _ = await slow.tasks(extreme_id, "extreme")
    assert set(counts) == slow.expected(["VN-22"])
    routine_counts, _ = await slow.tasks(routine_id, "routine")
    assert set(routine_counts) == slow.expected(["VN"])
    assert max(routine_counts.values()) == 1


async def test_channel_throttle_holds_and_a_new_limit_applies_without_restart(
    slow: LiveLoa,
) -> None:
    limit = 400  # oa tasks per second for the whole cluster (one worker here)
    await _set_limit(slow, "oa", limit)
    run = uuid.uuid4().hex[:6]
    await slow.publish(orjson.dumps(alert(f"T-{run}", ["VN-01", "VN-79"])))
    alert_id = f"test.agency.vn/T-{run}"
    for _ in range(200):  # throttled: part of it out, not all (bounded)
        seen = await _progress(slow, alert_id)
        if sum(p.emitted for p in seen.values()) >= 2 * CHUNK:
            break
        await asyncio.sleep(0.1)
    lifted_ms = int(time.time() * 1000)
    await _set_limit(slow, "oa", None)  # lifted live: the rest goes at full speed
    await slow.fanned_out(alert_id)
    counts, _ = await slow.tasks(alert_id, "extreme")
    assert set(counts) == slow.expected(["VN-01", "VN-79"])
    # while the limit held, no second of broker time saw more oa tasks than the limit plus one
    # chunk (a task's timestamp is set when its batch is built, after the throttle's wait)
    per_second: Counter[int] = Counter()
    async for record in read_to_end(slow.settings, slow.settings.sends_topic("extreme")):
        doc = orjson.loads(record.value)
        if doc["alert_id"] == alert_id and doc["channel"] == "oa" and record.timestamp < lifted_ms:
            per_second[record.timestamp // 1000] += 1
    assert per_second, "the throttle held for a while"
    assert max(per_second.values()) <= limit + CHUNK


async def _set_limit(live: LiveLoa, channel: str, rate: float | None) -> None:
    producer = make_producer(live.settings)
    await producer.start()
    try:
        value = None if rate is None else orjson.dumps({"rate": rate})
        await producer.send_and_wait(live.settings.channels_topic, value, key=channel.encode())
    finally:
        await producer.stop()


async def test_paused_channels_hold_the_fanout_and_a_cancel_during_the_wait_stops_it(
    slow: LiveLoa,
) -> None:
    """Limit 0 pauses a channel: nothing of it goes out (it sent one chunk an hour). A Cancel
    that comes while the chunks wait stops the order: none of its waiting chunks go out."""
    for channel in ("oa", "push", "sms"):
        await _set_limit(slow, channel, 0)
    try:
        run = uuid.uuid4().hex[:6]
        original = alert(f"P-{run}", ["VN-01"])
        await slow.publish(orjson.dumps(original))
        alert_id = f"test.agency.vn/P-{run}"
        outcome, _ = await slow.decision("test.agency.vn", f"P-{run}")
        assert outcome == "accepted"
        await asyncio.sleep(3)  # long enough for an unpaused chunk to have gone out
        assert sum(p.emitted for p in (await _progress(slow, alert_id)).values()) == 0
        cancel = {k: v for k, v in original.items() if k != "info"}
        cancel.update(
            identifier=f"P-{run}-c",
            msgType="Cancel",
            references=f"test.agency.vn,P-{run},{original['sent']}",
        )
        await slow.publish(orjson.dumps(cancel))
        progress = await slow.fanned_out(alert_id)
        assert {p.stopped for p in progress.values()} == {"cancelled"}
        assert sum(p.emitted for p in progress.values()) == 0
        counts, _ = await slow.tasks(alert_id, "extreme")
        assert not counts
    finally:
        for channel in ("oa", "push", "sms"):
            await _set_limit(slow, channel, None)
