"""Delivery policy without Kafka or a provider: priority order, retries, receipts, fallback."""

from __future__ import annotations

import httpx
import pytest

from streams.delivery.channels import outcome_of_response
from streams.delivery.ledger import Seen
from streams.delivery.policy import (
    Outcome,
    TaskBuffer,
    fallback_task,
    parse_task,
    receipt,
)
from streams.schemas import validator

TASK = {
    "alert_id": "gov.vn/T1",
    "version": 1,
    "kind": "alert",
    "priority": "extreme",
    "recipient_id": 42,
    "channel": "sms",
    "language": "vi",
    "idempotency_key": "gov.vn/T1:1:42",
}


def test_buffer_serves_extreme_before_severe_before_routine_whatever_arrived_first() -> None:
    buffer = TaskBuffer()
    buffer.add("routine", ["r1", "r2", "r3"])
    buffer.add("severe", ["s1"])
    buffer.add("extreme", ["e1", "e2"])
    assert buffer.take(10) == ["e1", "e2"]
    buffer.add("extreme", ["e3"])
    assert buffer.take(10) == ["e3"]
    assert buffer.take(10) == ["s1"]
    assert buffer.take(2) == ["r1", "r2"]
    assert len(buffer) == 1
    buffer.put_back("routine", "r2")  # its channel had no room: first again
    assert buffer.take(2) == ["r2", "r3"]


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, Outcome.delivered()),
        (202, {}, Outcome.delivered()),
        (429, {"retry-after": "3"}, Outcome.retry("rate_limited", 3.0)),
        (429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, Outcome.retry("rate_limited")),
        (429, {}, Outcome.retry("rate_limited")),
        (500, {}, Outcome.retry("http_500")),
        (503, {"retry-after": "1"}, Outcome.retry("http_503", 1.0)),
        (408, {}, Outcome.retry("http_408")),
        (400, {}, Outcome.failed("http_400")),
        (410, {}, Outcome.failed("http_410")),
    ],
)
def test_http_status_maps_to_delivered_retry_or_permanent_failure(
    status: int, headers: dict[str, str], expected: Outcome
) -> None:
    assert outcome_of_response(status, httpx.Headers(headers)) == expected


def test_receipts_are_schema_valid_for_both_outcomes() -> None:
    check = validator("receipt")
    check.validate(receipt(TASK, Outcome.delivered(), worker="w", at=1.0))
    failed = receipt(TASK, Outcome.failed("http_400"), worker="w", at=1.0)
    check.validate(failed)
    assert (failed["outcome"], failed["reason"], "fallback" in failed) == (
        "failed",
        "http_400",
        False,
    )
    moved = receipt(TASK, Outcome.failed("http_500"), worker="w", at=1.0, fallback="push")
    check.validate(moved)
    assert (moved["reason"], moved["fallback"]) == ("http_500", "push")


def test_fallback_goes_to_the_next_channel_once_in_the_same_lineage() -> None:
    first = fallback_task({**TASK, "fallback": ["push", "oa"]})
    assert first is not None
    assert (first["channel"], first["fallback"]) == ("push", ["oa"])
    assert first["idempotency_key"] == "gov.vn/T1:1:42/push"
    assert (first["alert_id"], first["version"], first["recipient_id"]) == ("gov.vn/T1", 1, 42)
    second = fallback_task(first)
    assert second is not None
    assert second["idempotency_key"] == "gov.vn/T1:1:42/oa"
    assert fallback_task(second) is None
    assert fallback_task(TASK) is None  # no preference beyond the channel it had


def test_unreadable_tasks_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_task([1])
    with pytest.raises(ValueError, match="without idempotency_key"):
        parse_task({k: v for k, v in TASK.items() if k != "idempotency_key"})
    assert parse_task({k: v for k, v in TASK.items() if k != "language"})["language"] == ""


def test_seen_keys_are_bounded() -> None:
    seen = Seen(2)
    assert [seen.add(k) for k in ("a", "b", "a", "c", "a")] == [True, True, False, True, True]


def test_fallback_task_is_a_schema_valid_send_task() -> None:
    task = fallback_task({**TASK, "fallback": ["push"]})
    validator("send_task").validate(task)
