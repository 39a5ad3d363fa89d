from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from streams.demo.oracle import Rows, expected_audience
from streams.directory.index import ChangeBatch, DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import encode_subscribers
from streams.fanout.encode import KINDS, TaskEncoder
from streams.fanout.plan import CapPolicy, PastOrder, plan_audience
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.schemas import validator

R = registry()
ALERT, UPDATE, CANCEL = (KINDS.index(k) for k in TaskKind)


BATCH = synthetic_subscribers(50_000, 3, R)
#: Expected audiences come from the independent oracle, not from the selection under test.
ROWS = Rows.from_batch(BATCH, R.ward_codes)


@pytest.fixture(scope="module")
def index() -> DirectoryPartition:
    d = DirectoryPartition()
    d.apply(BATCH)
    d.compact()
    return d


def _order(version: int, kind: TaskKind, targets: tuple[str, ...], **kw: object) -> FanoutOrder:
    base = FanoutOrder("a.vn/T-1", version, kind, Priority.EXTREME, 0, targets, False)
    return replace(base, **kw)  # type: ignore[arg-type]


def _ids(index: DirectoryPartition, targets: tuple[str, ...]) -> set[int]:
    doc = {"info": [{"area": [{"regions": list(targets)}]}]}
    return set(expected_audience(doc, ROWS).sure)


def _done(order: FanoutOrder, index: DirectoryPartition) -> PastOrder:
    ids = _ids(index, order.targets)
    return PastOrder(order, max(ids, default=-1), 0.0)


def test_first_version_is_its_audience(index: DirectoryPartition) -> None:
    plan = plan_audience(_order(1, TaskKind.ALERT, ("VN-22",)), index, R, [])
    assert set(plan.audience.ids.tolist()) == _ids(index, ("VN-22",))
    assert set(plan.kinds.tolist()) == {ALERT}


def test_unchanged_update_reaches_only_new_recipients(index: DirectoryPartition) -> None:
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    v2 = _order(2, TaskKind.UPDATE, ("VN-22", "VN-31"), changed=False)
    plan = plan_audience(v2, index, R, [_done(v1, index)])
    assert set(plan.audience.ids.tolist()) == _ids(index, ("VN-31",))
    assert set(plan.kinds.tolist()) == {ALERT}
    assert plan.suppressed == {"duplicate": len(_ids(index, ("VN-22",)))}


def test_changed_update_tells_everyone_served_and_alerts_the_new(
    index: DirectoryPartition,
) -> None:
    v1 = _order(1, TaskKind.ALERT, ("VN-22", "VN-31"))
    v2 = _order(2, TaskKind.UPDATE, ("VN-31", "VN-33"), changed=True)
    plan = plan_audience(v2, index, R, [_done(v1, index)])
    kinds = dict(zip(plan.audience.ids.tolist(), plan.kinds.tolist(), strict=True))
    served = _ids(index, ("VN-22", "VN-31"))
    assert {r for r, k in kinds.items() if k == UPDATE} == served  # VN-22 learns it shrank
    assert {r for r, k in kinds.items() if k == ALERT} == _ids(index, ("VN-33",))
    assert np.all(np.diff(plan.audience.ids.astype(np.int64)) > 0)


def test_served_stops_at_the_committed_cursor(index: DirectoryPartition) -> None:
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    ids = np.array(sorted(_ids(index, v1.targets)))
    half = int(ids[len(ids) // 2])
    v2 = _order(2, TaskKind.UPDATE, ("VN-22",), changed=False)
    plan = plan_audience(v2, index, R, [PastOrder(v1, half, 0.0)])
    assert set(plan.audience.ids.tolist()) == {i for i in ids.tolist() if i > half}


def test_cancel_reaches_everyone_the_lineage_served(index: DirectoryPartition) -> None:
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    v2 = _order(2, TaskKind.UPDATE, ("VN-31",), changed=True)
    v3 = _order(3, TaskKind.CANCEL, ())
    plan = plan_audience(v3, index, R, [_done(v1, index), _done(v2, index)])
    assert set(plan.audience.ids.tolist()) == _ids(index, ("VN-22", "VN-31"))
    assert set(plan.kinds.tolist()) == {CANCEL}


def test_routine_alerts_are_capped_but_extreme_ones_never(index: DirectoryPartition) -> None:
    def routine(alert_id: str) -> FanoutOrder:
        return replace(
            _order(1, TaskKind.ALERT, ("VN-22",)), alert_id=alert_id, priority=Priority.ROUTINE
        )

    history = [_done(routine(f"a.vn/R-{i}"), index) for i in range(3)]
    caps = CapPolicy(count=3, window_s=3600, now=100.0)
    fourth = plan_audience(routine("a.vn/R-9"), index, R, history, caps)
    assert len(fourth.audience) == 0
    assert fourth.suppressed == {"cap": len(_ids(index, ("VN-22",)))}
    looser = plan_audience(routine("a.vn/R-9"), index, R, history, replace(caps, count=4))
    assert set(looser.audience.ids.tolist()) == _ids(index, ("VN-22",))
    extreme = plan_audience(_order(1, TaskKind.ALERT, ("VN-22",)), index, R, history, caps)
    assert set(extreme.audience.ids.tolist()) == _ids(index, ("VN-22",))
    stale = plan_audience(
        routine("a.vn/R-9"), index, R, history, replace(caps, now=10_000.0)
    )  # the others left the window
    assert len(stale.audience) == len(_ids(index, ("VN-22",)))


def test_each_task_lists_the_recipients_further_channels_as_its_fallback(
    index: DirectoryPartition,
) -> None:
    order = _order(1, TaskKind.ALERT, ("VN-22",))
    plan = plan_audience(order, index, R, [])
    encoded = TaskEncoder(order).encode(plan.audience, 0, len(plan.audience), plan.kinds)
    tasks = [orjson.loads(v) for _, v in encoded]
    # the preferences as written to the directory topic, not as the index holds them
    written = {
        doc["recipient_id"]: doc["channels"]
        for doc in (orjson.loads(v) for _, v in encode_subscribers(BATCH, R) if v)
    }
    check = validator("send_task")
    for task in tasks:
        check.validate(task)
        assert [task["channel"], *task["fallback"]] == written[task["recipient_id"]]
    lengths = {len(t["fallback"]) for t in tasks}
    assert lengths == {0, 1, 2}  # single-channel subscribers get an empty list


# -- recipient 0, and the cap window's edge ------------------------------------------------------

QN_WARD = next(i for i, code in enumerate(R.ward_codes) if code.startswith("VN-22-"))


def _small(ids: list[int]) -> DirectoryPartition:
    """Subscribers ``ids``, all living in one ward of VN-22."""
    n = len(ids)
    d = DirectoryPartition()
    d.apply(
        ChangeBatch(
            ids=np.array(ids, dtype=np.uint64),
            ward=np.full(n, QN_WARD, dtype=np.uint16),
            channel=np.zeros(n, dtype=np.uint8),
            language=np.zeros(n, dtype=np.uint8),
            flags=np.zeros(n, dtype=np.uint8),
            deleted=np.zeros(n, dtype=np.bool_),
        )
    )
    d.compact()
    return d


def test_a_cursor_at_recipient_0_counts_recipient_0_as_served() -> None:
    small = _small([0, 1, 2, 3])
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    at_zero = [PastOrder(v1, 0, 0.0)]  # the first chunk committed recipient 0 only
    update = plan_audience(_order(2, TaskKind.UPDATE, ("VN-22",), changed=False), small, R, at_zero)
    assert update.audience.ids.tolist() == [1, 2, 3]
    assert update.suppressed == {"duplicate": 1}
    changed = plan_audience(_order(2, TaskKind.UPDATE, ("VN-22",)), small, R, at_zero)
    assert dict(zip(changed.audience.ids.tolist(), changed.kinds.tolist(), strict=True)) == {
        0: UPDATE,
        1: ALERT,
        2: ALERT,
        3: ALERT,
    }
    cancel = plan_audience(_order(2, TaskKind.CANCEL, ()), small, R, at_zero)
    assert cancel.audience.ids.tolist() == [0]
    assert cancel.kinds.tolist() == [CANCEL]
    nothing_yet = plan_audience(_order(2, TaskKind.CANCEL, ()), small, R, [PastOrder(v1, -1, 0.0)])
    assert len(nothing_yet.audience) == 0


def test_the_cap_window_includes_a_lineage_started_exactly_at_its_edge() -> None:
    small = _small([0, 1, 2])

    def routine(alert_id: str) -> FanoutOrder:
        return replace(
            _order(1, TaskKind.ALERT, ("VN-22",)), alert_id=alert_id, priority=Priority.ROUTINE
        )

    caps = CapPolicy(count=2, window_s=60.0, now=100.0)
    new = routine("a.vn/R-9")
    at_edge = [PastOrder(routine("a.vn/R-1"), 2, 40.0), PastOrder(routine("a.vn/R-2"), 2, 70.0)]
    capped = plan_audience(new, small, R, at_edge, caps)
    assert len(capped.audience) == 0
    assert capped.suppressed == {"cap": 3}
    just_out = [replace(at_edge[0], started_at=39.999), at_edge[1]]
    free = plan_audience(new, small, R, just_out, caps)
    assert free.audience.ids.tolist() == [0, 1, 2]
    assert free.suppressed == {}
    # a lineage counts once however many versions it had; the order's own lineage never counts
    one_lineage = [at_edge[0], replace(at_edge[0], order=replace(at_edge[0].order, version=2))]
    own = [PastOrder(replace(new, version=2), 2, 90.0)]  # not earlier: not served either
    for history in (one_lineage, [at_edge[0], *own]):
        assert plan_audience(new, small, R, history, caps).audience.ids.tolist() == [0, 1, 2]
    # reached by both lineages only up to a cursor: only those are capped
    partly = [at_edge[0], replace(at_edge[1], cursor=0)]
    assert plan_audience(new, small, R, partly, caps).audience.ids.tolist() == [1, 2]


def test_an_order_not_started_does_not_hide_what_later_ones_served() -> None:
    small = _small([0, 1, 2, 3])
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    v2 = _order(2, TaskKind.UPDATE, ("VN-22",))
    history = [PastOrder(v1, -1, 0.0), PastOrder(v2, 2, 0.0)]  # v1 never emitted, v2 up to 2
    cancel = plan_audience(_order(3, TaskKind.CANCEL, ()), small, R, history)
    assert cancel.audience.ids.tolist() == [0, 1, 2]
    assert cancel.suppressed == {}
    assert cancel.kinds.dtype == np.uint8
    # a past Cancel reached nobody new: it is skipped, not the end of the history
    with_cancel = [PastOrder(_order(2, TaskKind.CANCEL, ()), 3, 0.0), PastOrder(v1, 1, 0.0)]
    update = plan_audience(_order(3, TaskKind.UPDATE, ("VN-22",)), small, R, with_cancel)
    assert dict(zip(update.audience.ids.tolist(), update.kinds.tolist(), strict=True)) == {
        0: UPDATE,
        1: UPDATE,
        2: ALERT,
        3: ALERT,
    }
    assert update.kinds.dtype == np.uint8


def test_a_resumed_order_plans_its_whole_audience_whatever_its_own_cursor() -> None:
    """The scheduler resumes after the cursor itself: the plan of an order in the history with
    its own progress is the plan it had (its own version is not an earlier one)."""
    small = _small([0, 1, 2, 3])
    v1 = _order(1, TaskKind.ALERT, ("VN-22",))
    plan = plan_audience(v1, small, R, [PastOrder(v1, 1, 0.0)])
    assert plan.audience.ids.tolist() == [0, 1, 2, 3]
    assert plan.kinds.dtype == np.uint8


def test_a_cap_of_one_suppresses_whoever_one_other_routine_lineage_reached() -> None:
    small = _small([0, 1, 2])

    def routine(alert_id: str) -> FanoutOrder:
        return replace(
            _order(1, TaskKind.ALERT, ("VN-22",)), alert_id=alert_id, priority=Priority.ROUTINE
        )

    history = [PastOrder(routine("a.vn/R-1"), 1, 90.0)]
    caps = CapPolicy(count=1, window_s=60.0, now=100.0)
    plan = plan_audience(routine("a.vn/R-9"), small, R, history, caps)
    assert plan.audience.ids.tolist() == [2]
    assert plan.suppressed == {"cap": 2}
    off = plan_audience(routine("a.vn/R-9"), small, R, history, replace(caps, count=0))
    assert off.audience.ids.tolist() == [0, 1, 2]
