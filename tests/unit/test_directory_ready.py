"""``DirectoryService.ready``: a long replay that keeps moving is waited for; only a stall (no
progress for ``LOA_DIRECTORY_CATCHUP_TIMEOUT_S``) is ``DirectoryNotReady``. The service's
replay position is driven by hand here (the real replay is in tests/integration)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from streams.directory.index import DirectoryPartition
from streams.directory.service import DirectoryService
from streams.errors import DirectoryNotReady
from streams.regions import registry
from streams.settings.model import Settings

END = 100


class _EndOffsets:
    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, END)


def _service(timeout_s: float) -> DirectoryService:
    service = DirectoryService(Settings(directory_catchup_timeout_s=timeout_s), registry())
    service._consumer = _EndOffsets()  # type: ignore[assignment]
    service._fetcher = object()  # type: ignore[assignment]  # positions come from _positions
    service._indexes[0] = DirectoryPartition()
    service._positions[0] = 0
    return service


async def _advance(service: DirectoryService, step: int, every_s: float, until: int) -> None:
    while service._positions[0] < until:
        await asyncio.sleep(every_s)
        async with service._changed:
            service._positions[0] = min(service._positions[0] + step, until)
            service._changed.notify_all()


async def test_a_replay_longer_than_the_timeout_that_keeps_moving_is_waited_for() -> None:
    service = _service(timeout_s=0.5)
    mover = asyncio.create_task(_advance(service, step=5, every_s=0.05, until=END))
    index = await asyncio.wait_for(service.ready(0), 30)  # about 1 s: twice the timeout
    await mover
    assert index is service._indexes[0]


async def test_a_replay_that_stops_moving_is_not_ready_and_says_where_it_stopped() -> None:
    service = _service(timeout_s=0.3)
    mover = asyncio.create_task(_advance(service, step=10, every_s=0.02, until=40))
    with pytest.raises(DirectoryNotReady, match=r"made no progress for 0.3 s at offset 40 of 100"):
        await asyncio.wait_for(service.ready(0), 30)
    await mover


async def test_a_read_of_a_partition_not_owned_waits_then_is_not_ready_and_never_claims_it() -> (
    None
):
    service = _service(timeout_s=0.2)
    with pytest.raises(DirectoryNotReady, match="partition 5 is not owned by this worker"):
        await asyncio.wait_for(service.ready(5), 30)
    assert 5 not in service.owned and 5 not in service._positions
