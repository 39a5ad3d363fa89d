"""When a running fan-out must stop (``streams.runtime.app.stop_reason``, pure; no broker).

The scheduler asks before every chunk: a Cancel of the lineage or the alert's expiry ends the
order, except the Cancel's own stand-down tasks, which always go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.ingest import Accepted, decide
from streams.ingest.lifecycle import LifecycleState
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.runtime.app import Runtime, stop_reason

NOW = datetime(2026, 9, 6, 1, 0, tzinfo=UTC)
LATER = (NOW + timedelta(hours=1)).isoformat()


def _order(kind: TaskKind = TaskKind.ALERT, expires: str | None = LATER) -> FanoutOrder:
    return FanoutOrder("a.vn/T-1", 1, kind, Priority.EXTREME, 0, ("VN-22",), False, expires=expires)


@pytest.mark.parametrize("kind", [TaskKind.ALERT, TaskKind.UPDATE])
def test_a_cancel_of_the_lineage_stops_a_running_fanout(kind: TaskKind) -> None:
    order = _order(kind)
    assert stop_reason(order, {"a.vn/T-1"}.__contains__, NOW) == "cancelled"
    assert stop_reason(order, {"a.vn/T-2"}.__contains__, NOW) is None  # another lineage's


def test_a_cancel_order_is_never_stopped_by_its_own_cancel_nor_by_expiry() -> None:
    cancel = _order(TaskKind.CANCEL, expires=(NOW - timedelta(hours=1)).isoformat())
    assert stop_reason(cancel, {"a.vn/T-1"}.__contains__, NOW) is None


def test_an_alert_stops_when_it_expires_and_not_before() -> None:
    never = set[str]().__contains__
    assert stop_reason(_order(expires=LATER), never, NOW) is None
    assert stop_reason(_order(expires=NOW.isoformat()), never, NOW) == "expired"  # at the instant
    just_after = NOW + timedelta(microseconds=1)
    assert stop_reason(_order(expires=NOW.isoformat()), never, just_after) == "expired"
    before = NOW - timedelta(microseconds=1)
    assert stop_reason(_order(expires=NOW.isoformat()), never, before) is None
    # the instant counts, not the text: 08:00 at +07:00 is 01:00 UTC
    assert stop_reason(_order(expires="2026-09-06T08:00:00+07:00"), never, NOW) == "expired"
    assert stop_reason(_order(expires=None), never, NOW + timedelta(days=3650)) is None


def test_a_cancelled_lineage_says_cancelled_even_once_expired() -> None:
    expired = _order(expires=(NOW - timedelta(hours=1)).isoformat())
    assert stop_reason(expired, {"a.vn/T-1"}.__contains__, NOW) == "cancelled"


def _accept(state: LifecycleState, doc: dict[str, Any]) -> None:
    decision = decide(
        orjson.dumps(doc), regions=registry(), partitions=1, max_bytes=1 << 16, state=state
    )
    assert isinstance(decision, Accepted), decision
    state.record(decision.plan, doc["msgType"], decision.alert)


def test_the_runtime_asks_the_ingest_lifecycle_and_the_clock() -> None:
    """``Runtime.stop_reason`` (what the scheduler is given) wires the rule to the lifecycle
    that ingest keeps, built with only what it reads; the Cancel goes through ``decide``."""
    lifecycle = LifecycleState()
    runtime = Runtime.__new__(Runtime)  # no Kafka clients: only what stop_reason reads
    runtime.ingest = SimpleNamespace(lifecycle=lifecycle)  # type: ignore[assignment]
    alert = {
        "identifier": "T-1",
        "sender": "a.vn",
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": [
            {
                "category": ["Met"],
                "event": "Bão",
                "urgency": "Immediate",
                "severity": "Extreme",
                "certainty": "Likely",
                "headline": "Bão",
                "area": [{"areaDesc": "ven biển", "regions": ["VN-22"]}],
            }
        ],
    }
    _accept(lifecycle, alert)
    live = _order(expires=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert Runtime.stop_reason(runtime, live) is None
    past = _order(expires=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    assert Runtime.stop_reason(runtime, past) == "expired"
    cancel = {
        **alert,
        "identifier": "T-2",
        "msgType": "Cancel",
        "references": "a.vn,T-1,2026-09-06T08:00:00+07:00",
    }
    del cancel["info"]
    _accept(lifecycle, cancel)
    assert Runtime.stop_reason(runtime, live) == "cancelled"
    assert Runtime.stop_reason(runtime, _order(TaskKind.CANCEL)) is None
