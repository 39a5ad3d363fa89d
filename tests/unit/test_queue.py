"""The fan-out's pure order queue and progress transitions (streams.fanout.queue)."""

from __future__ import annotations

from streams.fanout import queue
from streams.fanout.queue import PartitionQueue, next_order
from streams.records import FanoutOrder, Priority, Progress, TaskKind


def _order(alert: str, *, version: int = 1, priority: Priority = Priority.ROUTINE) -> FanoutOrder:
    return FanoutOrder(
        alert_id=alert,
        version=version,
        kind=TaskKind.ALERT if version == 1 else TaskKind.UPDATE,
        priority=priority,
        partition=0,
        targets=("VN",),
        test_only=False,
        written_at=100.0,
    )


def test_most_urgent_order_goes_next_across_partitions_then_the_oldest() -> None:
    a, b = PartitionQueue(), PartitionQueue()
    a.add(_order("routine"), None, seq=1, now=1.0)
    b.add(_order("severe-late", priority=Priority.SEVERE), None, seq=3, now=1.0)
    b.add(_order("severe", priority=Priority.SEVERE), None, seq=2, now=1.0)
    picked = next_order({0: a, 1: b})
    assert picked is not None and picked[0] == 1 and picked[1].order.alert_id == "severe"
    b.busy = True
    picked = next_order({0: a, 1: b})
    assert picked is not None and picked[1].order.alert_id == "routine"


def test_later_version_waits_and_supersedes_the_earlier_one() -> None:
    q = PartitionQueue()
    v1, v2 = _order("x"), _order("x", version=2, priority=Priority.EXTREME)
    q.add(v1, None, seq=1, now=1.0)
    q.add(v2, None, seq=2, now=1.0)
    running = q.next_ready()
    assert running is not None and running.order == v1
    assert q.superseded(v1) == "superseded" and q.superseded(v2) is None


def test_finished_order_leaves_the_queue_and_stays_in_history() -> None:
    q = PartitionQueue()
    order = _order("x")
    q.add(order, None, seq=1, now=1.0)
    running = q.orders[queue.order_key(order)]
    done = queue.chunk_written(
        running.progress, emitted=5, cursor=42, done=True, stopped=None, at=2.0
    )
    q.committed(running, done)
    assert q.next_ready() is None and q.knows(order)
    assert q.history[queue.order_key(order)].cursor == 42


def test_started_progress_carries_the_time_ingest_wrote_the_order() -> None:
    progress = queue.started(_order("x"), 150.0)
    assert progress.started_at == 150.0 and progress.written_at == 100.0
    assert progress.first_task_at is None and progress.finished_at is None


def test_first_task_time_is_the_commit_of_the_first_chunk_that_emitted() -> None:
    start = queue.started(_order("x"), 150.0)
    empty = queue.chunk_written(start, emitted=0, cursor=None, done=False, stopped=None, at=151.0)
    assert queue.chunk_committed(start, empty, 151.5).first_task_at is None
    written = queue.chunk_written(start, emitted=10, cursor=9, done=False, stopped=None, at=152.0)
    # the record inside the transaction: tasks acknowledged, commit not yet done
    assert written.first_task_at == 152.0 and written.finished_at is None
    first = queue.chunk_committed(start, written, 152.25)
    assert first.first_task_at == 152.25 and first.emitted == 10 and first.cursor == 9
    second_written = queue.chunk_written(
        first, emitted=10, cursor=19, done=False, stopped=None, at=153.0
    )
    second = queue.chunk_committed(first, second_written, 153.5)
    assert second.first_task_at == 152.25  # a later chunk keeps the first commit's time


def test_finish_time_is_the_commit_of_the_last_chunk() -> None:
    start = queue.started(_order("x"), 150.0)
    first = queue.chunk_committed(
        start,
        queue.chunk_written(start, emitted=10, cursor=9, done=False, stopped=None, at=151.0),
        151.5,
    )
    assert first.finished_at is None and not first.done
    last_written = queue.chunk_written(
        first, emitted=3, cursor=12, done=True, stopped=None, at=154.0
    )
    last = queue.chunk_committed(first, last_written, 154.75)
    assert last.done and last.finished_at == 154.75 and last.emitted == 13
    assert last.first_task_at == 151.5 and last.started_at == 150.0


def test_stopped_order_finishes_at_its_stop_commit_without_new_tasks() -> None:
    start = queue.started(_order("x"), 150.0)
    written = queue.chunk_written(
        start, emitted=0, cursor=None, done=True, stopped="cancelled", at=151.0
    )
    stopped = queue.chunk_committed(start, written, 151.2)
    assert stopped.stopped == "cancelled" and stopped.finished_at == 151.2
    assert stopped.first_task_at is None and stopped.cursor is None


def test_resumed_order_keeps_its_first_plan_figures() -> None:
    start = queue.started(_order("x"), 150.0)
    planned = queue.planned(start, targeted=100, suppressed={"cap": 4})
    again = queue.planned(planned, targeted=120, suppressed={})
    assert again.targeted == 100 and again.suppressed == {"cap": 4}


def test_failed_order_ends_failed_with_what_it_emitted() -> None:
    progress = Progress("x", 1, 0, "routine", 10, 4, False, 1.0, cursor=3)
    failed = queue.failed(progress, 9.0)
    assert failed.done and failed.stopped == "failed" and failed.emitted == 4
    assert failed.finished_at == 9.0


def test_order_written_at_survives_json() -> None:
    order = _order("x")
    assert FanoutOrder.from_json(order.to_json()).written_at == 100.0
