"""Failover with a number: workers killed, restarted and rolled during a national fan-out.

1,000,000 subscribers, 4 partitions. The fan-out is slowed by a channel throttle
(``<prefix>.channels``) so a fault lands deterministically between 10 % and 60 % of the
committed tasks; the throttle is lifted once the fault is in, so the recovery runs at full
speed. Every scenario is judged from outside the workers: a ``read_committed`` consumer reads
every committed task back (0 missing, 0 duplicate, 0 extra), and the sends topics are stamped by
the broker (LogAppendTime), whose clock gives the largest gap between committed tasks, overall
and on one partition. The gaps are logged and appended to ``.loa/fault-gaps.jsonl`` for the
README's failure table; they are figures, not assertions (timing depends on the machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition

from streams.demo.localrun import WorkerProcess
from streams.directory.synthetic import synthetic_subscribers
from streams.records import Progress
from streams.settings.model import Settings
from tests.faults.conftest import (
    SEED,
    Stage,
    Workers,
    committed_tasks,
    compare,
    emitted_share,
    gaps,
    make_stage,
    owned_partitions,
    publish_national,
    record_gaps,
    sends_end,
    set_channel_rate,
    wait_done,
    wait_progress,
    wait_until,
)

pytestmark = pytest.mark.faults

log = logging.getLogger(__name__)

SUBSCRIBERS = 1_000_000
#: Tasks/s of the ``oa`` channel (70 % of recipients) while a fault is prepared: the national
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
    return 0.10 < emitted_share(SUBSCRIBERS)(latest) < 0.60


def _started(latest: dict[int, Progress]) -> bool:
    return emitted_share(SUBSCRIBERS)(latest) > 0.05


def _done(latest: dict[int, Progress], partitions: int) -> bool:
    return len(latest) == partitions and all(p.done for p in latest.values())


async def _finish_and_judge(
    stage: Stage,
    settings: Settings,
    alert_id: str,
    start: dict[TopicPartition, int],
    scenario: str,
    **extra: object,
) -> dict[int, Progress]:
    """Wait for the fan-out to finish, read every committed task back, record the gaps and
    assert exactly once."""
    final = await wait_done(settings, alert_id)
    assert sum(p.targeted for p in final.values()) == SUBSCRIBERS
    assert sum(p.emitted for p in final.values()) == SUBSCRIBERS
    tasks = await committed_tasks(settings, start)
    expected = synthetic_subscribers(SUBSCRIBERS, SEED, stage.regions).ids
    result = compare(tasks.ids, expected)
    record_gaps(scenario, gaps(tasks), result, **extra)
    assert (result.missing, result.duplicate, result.extra) == (0, 0, 0)
    assert result.committed == SUBSCRIBERS
    return final


def _split(workers: list[WorkerProcess], partitions: int) -> bool:
    """Every worker's log caught up with the same rebalance: disjoint shares of all partitions."""
    owned = [owned_partitions(w) for w in workers]
    if any(not o for o in owned):
        return False
    union: set[int] = set()
    for o in owned:
        assert o is not None
        if union & o:
            return False
        union |= o
    return union == set(range(partitions))


def _covered(workers: list[WorkerProcess], partitions: int) -> bool:
    """Every partition owned by exactly one of ``workers`` (some may own none)."""
    owned = [owned_partitions(w) or set() for w in workers]
    return sum(len(o) for o in owned) == partitions and set().union(*owned) == set(
        range(partitions)
    )


async def test_worker_killed_and_restarted_as_the_same_member_resumes_exactly_once(
    national: Stage, workers: Workers
) -> None:
    """kill -9, then its supervisor starts it again with the same ``LOA_INSTANCE_ID``: the
    static member gets its partitions back without waiting out the session timeout."""
    settings = national.app("restart")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    first = workers.start(settings, "worker", LOA_FANOUT_CHUNK=CHUNK)
    alert_id = await publish_national(national, first)

    at_kill = await wait_progress(settings, alert_id, _midway, timeout_s=120)
    first.kill()
    assert not _done(at_kill, settings.partitions)
    await set_channel_rate(settings, "oa", None)  # the recovery runs at full speed
    again = workers.start(settings, "worker", LOA_FANOUT_CHUNK=CHUNK)  # same member id
    await _finish_and_judge(
        national,
        settings,
        alert_id,
        start,
        "one worker kill -9, restarted (static member)",
        emitted_at_kill=sum(p.emitted for p in at_kill.values()),
    )
    log_text = again.log_path.read_text()
    assert "unfinished orders" in log_text  # it resumed, not restarted
    # the first worker snapshotted its directory right after its replay (not at the 60 s
    # interval): the restarted member loads it instead of replaying 1M subscribers
    assert "subscribers from" in log_text


async def test_two_workers_one_killed_the_other_takes_over_and_finishes(
    national: Stage, workers: Workers
) -> None:
    settings = national.app("pair")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    a = workers.start(settings, "a", LOA_FANOUT_CHUNK=CHUNK)
    b = workers.start(settings, "b", LOA_FANOUT_CHUNK=CHUNK)
    await wait_until(lambda: _split([a, b], settings.partitions), "a split", timeout_s=90)
    killed = owned_partitions(a)
    assert killed is not None
    alert_id = await publish_national(national, a)

    at_kill = await wait_progress(settings, alert_id, _midway, timeout_s=120)
    a.kill()
    assert not all(at_kill[p].done for p in killed if p in at_kill)
    await set_channel_rate(settings, "oa", None)
    await _finish_and_judge(
        national,
        settings,
        alert_id,
        start,
        "one of two workers kill -9",
        killed_partitions=sorted(killed),
        emitted_at_kill=sum(p.emitted for p in at_kill.values()),
    )
    assert b.alive
    assert owned_partitions(b) == set(range(settings.partitions))
    assert "unfinished orders" in b.log_path.read_text()


async def test_rolling_sigterm_restart_of_three_workers_loses_and_repeats_nothing(
    national: Stage, workers: Workers
) -> None:
    """Three workers, four partitions, each stopped with SIGTERM and started again (same
    member id, a fresh log) once the group has settled, as a deployment rollout does. Faust's
    assignor is sticky and gives at most two partitions to a worker, so a restarted worker may
    get none until the next rebalance: settled means every partition owned by exactly one
    live worker and the restarted one ready."""
    settings = national.app("rolling")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE / 2)  # long enough for three restarts
    names = ["r0", "r1", "r2"]
    pool = [workers.start(settings, n, LOA_FANOUT_CHUNK=CHUNK, LOA_INSTANCE_ID=n) for n in names]

    def settled() -> bool:
        ready = all("Worker ready" in w.log_path.read_text() for w in pool if w.log_path.exists())
        return ready and _covered(pool, settings.partitions)

    await wait_until(settled, "the group to settle", timeout_s=120)
    alert_id = await publish_national(national, pool[0])
    await wait_progress(settings, alert_id, _started, timeout_s=120)

    codes: list[int | None] = []
    for i, name in enumerate(names):
        pool[i].stop(timeout_s=30)  # SIGTERM; the worker leaves the group as it stops
        codes.append(pool[i].proc.returncode if pool[i].proc else None)
        pool[i] = workers.start(
            settings, f"{name}-again", LOA_FANOUT_CHUNK=CHUNK, LOA_INSTANCE_ID=name
        )
        await wait_until(settled, "the group to settle", timeout_s=120)
    await set_channel_rate(settings, "oa", None)
    await _finish_and_judge(
        national, settings, alert_id, start, "rolling SIGTERM restart of 3 workers"
    )
    assert codes == [0, 0, 0]  # each stopped cleanly within its shutdown timeout


async def test_kill_9_during_directory_restore_then_restart_finishes_exactly_once(
    national: Stage, workers: Workers
) -> None:
    settings = national.app("restore")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", THROTTLE)
    first = workers.start(settings, "first", LOA_FANOUT_CHUNK=CHUNK)
    alert_id = await publish_national(national, first)
    await wait_progress(settings, alert_id, _midway, timeout_s=120)
    first.kill()

    second = workers.start(settings, "second", LOA_FANOUT_CHUNK=CHUNK)
    # killed as soon as it owns a directory partition: its replay of 1M changes is under way
    await wait_until(lambda: owned_partitions(second) is not None, "a restore", timeout_s=90)
    second.kill()
    log_text = second.log_path.read_text()
    await set_channel_rate(settings, "oa", None)
    workers.start(settings, "second", LOA_FANOUT_CHUNK=CHUNK)
    await _finish_and_judge(
        national,
        settings,
        alert_id,
        start,
        "kill -9 during directory restore",
        killed_before_serving="workers: serving partitions" not in log_text,
    )


async def test_kill_9_inside_a_full_speed_transaction_then_restart_finishes_exactly_once(
    national: Stage, workers: Workers
) -> None:
    """At full speed a worker is inside a chunk transaction (appending or committing) nearly
    all the time: a kill there leaves an open transaction the next owner aborts by fencing."""
    settings = national.app("txn")
    start = await sends_end(settings)
    await set_channel_rate(settings, "oa", None)
    first = workers.start(settings, "worker", LOA_FANOUT_CHUNK="50000")
    alert_id = await publish_national(national, first)
    at_kill = await wait_progress(settings, alert_id, _started, timeout_s=120)
    first.kill()
    workers.start(settings, "worker", LOA_FANOUT_CHUNK="50000")
    await _finish_and_judge(
        national,
        settings,
        alert_id,
        start,
        "kill -9 inside a transaction (full speed)",
        emitted_at_kill=sum(p.emitted for p in at_kill.values()),
    )
