"""kill -9 of a worker in the middle of a national fan-out of 1,000,000 recipients.

The fan-out is slowed by a channel throttle (``<prefix>.channels``) so the kill lands
deterministically between 10 % and 60 % of the committed tasks; the throttle is lifted before
the recovery so it finishes quickly. Exactly once is checked on everything a ``read_committed``
consumer sees: every recipient has one task, none twice, none who should not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.directory.synthetic import synthetic_subscribers
from streams.records import Progress
from tests.faults.conftest import (
    SEED,
    Stage,
    Workers,
    committed_recipients,
    compare,
    emitted_share,
    make_stage,
    owned_partitions,
    publish_national,
    sends_end,
    set_channel_rate,
    wait_progress,
    wait_until,
)

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

SUBSCRIBERS = 1_000_000
#: Tasks/s of the ``oa`` channel (70 % of recipients) while the kill is prepared: the national
#: fan-out takes about 15 s instead of 3, and chunks are 5,000 recipients (a tenth of a second).
THROTTLE = 50_000.0
CHUNK = "20000"


@pytest.fixture(scope="module")
async def national(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stage]:
    started = time.monotonic()
    stage = await make_stage(kafka_bootstrap, tmp_path_factory.mktemp("national"), SUBSCRIBERS)
    log.warning("loaded %d subscribers in %.1f s", SUBSCRIBERS, time.monotonic() - started)
    yield stage


def _midway(latest: dict[int, Progress]) -> bool:
    share = emitted_share(SUBSCRIBERS)(latest)
    return 0.10 < share < 0.60


def _done(latest: dict[int, Progress], partitions: int) -> bool:
    return len(latest) == partitions and all(p.done for p in latest.values())


async def test_kill_9_mid_fanout_then_restart_leaves_exactly_one_task_per_recipient(
    national: Stage, workers: Workers, tmp_path: Path
) -> None:
    settings = national.app("kill9")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    first = workers.start(settings, "first", LOA_FANOUT_CHUNK=CHUNK)
    alert_id = await publish_national(national, first)

    at_kill = await wait_progress(settings, alert_id, _midway, timeout_s=120)
    first.kill()
    emitted = sum(p.emitted for p in at_kill.values())
    assert not _done(at_kill, settings.partitions)

    await set_channel_rate(settings, "oa", None)  # the recovery runs at full speed
    second = workers.start(settings, "second", LOA_FANOUT_CHUNK=CHUNK)
    final = await wait_progress(
        settings, alert_id, lambda x: _done(x, settings.partitions), timeout_s=120
    )
    assert "unfinished orders" in second.log_path.read_text()  # it resumed, not restarted
    assert sum(p.targeted for p in final.values()) == SUBSCRIBERS
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS

    got = await committed_recipients(settings, start)
    expected = synthetic_subscribers(SUBSCRIBERS, SEED, national.regions).ids
    result = compare(got, expected)
    log.warning("kill -9 after %d committed tasks; read back %s", emitted, result)
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == SUBSCRIBERS


async def test_two_workers_one_killed_the_other_takes_over_and_finishes(
    national: Stage, workers: Workers
) -> None:
    settings = national.app("pair")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    a = workers.start(settings, "a", LOA_FANOUT_CHUNK=CHUNK)
    b = workers.start(settings, "b", LOA_FANOUT_CHUNK=CHUNK)
    all_partitions = set(range(settings.partitions))

    def split() -> bool:
        owned_a, owned_b = owned_partitions(a), owned_partitions(b)
        # both logs caught up with the same rebalance: disjoint halves of all partitions
        return bool(
            owned_a and owned_b and not owned_a & owned_b and owned_a | owned_b == all_partitions
        )

    await wait_until(split, "both workers to own partitions", timeout_s=90)
    killed = owned_partitions(a)
    assert killed is not None
    alert_id = await publish_national(national, a)

    at_kill = await wait_progress(settings, alert_id, _midway, timeout_s=120)
    a.kill()
    emitted = sum(p.emitted for p in at_kill.values())
    assert not all(at_kill[p].done for p in killed if p in at_kill)

    await set_channel_rate(settings, "oa", None)
    final = await wait_progress(
        settings, alert_id, lambda x: _done(x, settings.partitions), timeout_s=120
    )
    assert b.alive
    assert owned_partitions(b) == all_partitions
    assert "unfinished orders" in b.log_path.read_text()
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS

    got = await committed_recipients(settings, start)
    expected = synthetic_subscribers(SUBSCRIBERS, SEED, national.regions).ids
    result = compare(got, expected)
    log.warning(
        "killed the owner of %s after %d committed tasks; read back %s",
        sorted(killed),
        emitted,
        result,
    )
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == SUBSCRIBERS
