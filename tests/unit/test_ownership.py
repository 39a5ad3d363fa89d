"""Partition ownership (streams.kafkaio.ownership): assign → restore → serve → revoke, without
Kafka.

The owners here are plain recorders of what ownership asked of them: pure logic, no Kafka at all.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.health import PartitionState, Readiness
from streams.kafkaio.ownership import Ownership, owning, restore_once
from streams.metrics import Metrics
from streams.retrying import RetryPolicy

FAST = RetryPolicy(base_s=0.01, cap_s=0.01)


class Recorder:
    def __init__(self, component: str, *, failures: int = 0) -> None:
        self.component = component
        self.failures = failures
        self.restored: list[int] = []
        self.revoked: list[int] = []

    async def restore(self, partition: int) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("broker unreachable")
        self.restored.append(partition)

    async def revoke(self, partitions: set[int]) -> None:
        self.revoked += sorted(partitions)


def _failures(metrics: Metrics, component: str) -> float:
    value = metrics.registry.get_sample_value(
        "loa_partition_restore_failures_total", {"component": component}
    )
    return value or 0.0


async def test_assigned_partitions_are_restored_by_every_owner_then_serving() -> None:
    directory, fanout = Recorder("directory"), Recorder("fanout")
    readiness, metrics = Readiness(), Metrics()
    ownership = Ownership([directory, fanout], readiness, metrics, retry=FAST)
    ownership.start()
    try:
        readiness.started()
        await asyncio.wait_for(ownership.assign({0, 1}), 10)
        assert sorted(directory.restored) == sorted(fanout.restored) == [0, 1]
        assert readiness.ready and ownership.owned == {0, 1}
        await asyncio.wait_for(ownership.assign({1, 2}), 10)
        assert directory.revoked == fanout.revoked == [0]
        assert readiness.state("fanout", 0) is None
        assert readiness.state("fanout", 2) is PartitionState.SERVING
    finally:
        await ownership.stop()


async def test_failed_restore_is_retried_counted_and_shown_until_it_serves() -> None:
    flaky = Recorder("directory", failures=2)
    readiness, metrics = Readiness(), Metrics()
    readiness.started()
    # failed for 50 ms between attempts: long enough to be seen
    ownership = Ownership([flaky], readiness, metrics, retry=RetryPolicy(0.05, 0.05, jitter=0))
    ownership.start()
    try:
        ownership.request({3})
        for _ in range(200):
            if readiness.state("directory", 3) is PartitionState.FAILED:
                break
            await asyncio.sleep(0.005)
        report = readiness.report()
        assert not report.ready and "broker unreachable" in report.errors["directory/3"]
        await asyncio.wait_for(ownership.settled(), 10)
        assert flaky.restored == [3] and readiness.ready
        assert _failures(metrics, "directory") == 2
    finally:
        await ownership.stop()


async def test_restore_of_a_partition_revoked_meanwhile_is_abandoned() -> None:
    never = Recorder("fanout", failures=10**9)
    readiness, metrics = Readiness(), Metrics()
    ownership = Ownership([never], readiness, metrics, retry=FAST)
    ownership.start()
    try:
        ownership.request({5})
        await asyncio.sleep(0.05)
        await asyncio.wait_for(ownership.assign(set()), 10)
        assert ownership.owned == frozenset() and readiness.state("fanout", 5) is None
    finally:
        await ownership.stop()


async def test_replica_restored_once_serves_after_its_retries() -> None:
    replica = Recorder("agencies", failures=1)
    readiness, metrics = Readiness(), Metrics()
    await asyncio.wait_for(
        restore_once("agencies", lambda: replica.restore(0), readiness, metrics, retry=FAST),
        10,
    )
    assert readiness.state("agencies", 0) is PartitionState.SERVING
    assert _failures(metrics, "agencies") == 1


async def test_a_read_waits_for_the_restore_and_never_claims_a_partition_not_wanted() -> None:
    directory, fanout = Recorder("directory"), Recorder("fanout", failures=2)
    ownership = Ownership([directory, fanout], Readiness(), Metrics(), retry=FAST)
    ownership.start()
    try:
        waiting = asyncio.create_task(ownership.restored("fanout", 4))
        await asyncio.sleep(0.05)
        assert not waiting.done() and fanout.restored == []  # no assignment yet: it waits
        ownership.request({4})
        assert await asyncio.wait_for(waiting, 10) is True
        assert fanout.restored == [4]  # restored once, by the ownership task
        # a partition this worker is not given: False at once, and nobody restores it
        assert await asyncio.wait_for(ownership.restored("fanout", 7), 10) is False
        assert 7 not in directory.restored + fanout.restored
    finally:
        await ownership.stop()


async def test_reset_drops_and_restores_owned_partitions_through_the_same_path() -> None:
    receipts = Recorder("receipts")
    readiness, metrics = Readiness(), Metrics()
    ownership = Ownership([receipts], readiness, metrics, retry=FAST)
    ownership.start()
    try:
        await asyncio.wait_for(ownership.assign({0, 1}), 10)
        await asyncio.wait_for(ownership.reset({1, 9}), 10)  # 9 is not owned: left alone
        assert receipts.revoked == [1]
        assert sorted(receipts.restored) == [0, 1, 1]
        assert (
            ownership.owned == {0, 1} and readiness.state("receipts", 1) is PartitionState.SERVING
        )
    finally:
        await ownership.stop()


async def test_a_tool_owns_partitions_and_gets_the_restore_error_itself() -> None:
    directory = Recorder("directory")
    async with owning([directory], range(3)) as ownership:
        assert ownership.owned == {0, 1, 2} and sorted(directory.restored) == [0, 1, 2]
    broken = Recorder("directory", failures=1)
    with pytest.raises(OSError, match="broker unreachable"):
        async with owning([broken], {0}):
            pass
    assert broken.restored == []  # one attempt (TOOL_RETRY): the tool decides what comes next
