"""Retrying receipts in the fold and `loa status` per channel (pure, no broker): a task waits
for a retry from its first retrying receipt until its final one; tasks are counted, not
receipts."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.receipts.fold import PartitionTallies, Tally, parse_receipt
from streams.receipts.status import as_json, render, summarize
from streams.schemas import validator

ALERT = "gov.vn/R1"


def _doc(key: int, outcome: str, channel: str = "sms", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "alert_id": ALERT,
        "version": 1,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": key,
        "channel": channel,
        "idempotency_key": f"{ALERT}:1:{key}",
        "outcome": outcome,
        "reason": None if outcome == "delivered" else "http_503",
        "at": 1.0,
        "worker": "w",
    }
    doc.update(over)
    return doc


def _life(key: int, retries: int, end: str | None, channel: str = "sms") -> list[dict[str, Any]]:
    """The receipts the worker writes for one task: ``retries`` retrying receipts, then its
    final one (``end``: delivered, failed, fallback or None while it still waits)."""
    docs = []
    for attempt in range(1, retries + 1):
        docs.append(
            _doc(
                key,
                "retrying",
                channel,
                attempt=attempt,
                next_attempt_at=1000.0 + key + attempt,
                **({"from_retry": True} if attempt > 1 else {}),
            )
        )
    marks = {"from_retry": True} if retries else {}
    if end == "delivered":
        docs.append(_doc(key, "delivered", channel, **marks))
    elif end == "failed":
        docs.append(_doc(key, "failed", channel, **marks))
    elif end == "fallback":
        docs.append(_doc(key, "failed", channel, fallback="oa", **marks))
    return docs


def _interleave(lives: list[list[dict[str, Any]]], seed: int) -> list[dict[str, Any]]:
    """Receipts of different tasks interleaved, each task's own in order (one partition)."""
    rng = random.Random(seed)
    queues = [list(life) for life in lives if life]
    out = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


def _fold(docs: list[dict[str, Any]]) -> Tally:
    state = PartitionTallies(0)
    state.fold(parse_receipt(orjson.dumps(d)) for d in docs)
    return state.tallies[(ALERT, 1)]


tasks = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["delivered", "failed", "fallback", None])).filter(
        lambda t: t[0] > 0 or t[1] is not None
    ),
    max_size=40,
)


@given(tasks, st.integers(0, 10_000))
def test_retrying_counts_tasks_waiting_not_receipts_in_any_interleaving(
    lives: list[tuple[int, str | None]], seed: int
) -> None:
    docs = _interleave([_life(k, r, end) for k, (r, end) in enumerate(lives)], seed)
    tally = _fold(docs) if docs else Tally()
    sms = tally.channels.get("sms")
    waiting = sum(1 for r, end in lives if end is None)
    assert (sms.retrying if sms else 0) == waiting
    assert tally.delivered == sum(1 for _, end in lives if end == "delivered")
    assert tally.failed == sum(1 for _, end in lives if end == "failed")
    assert (sms.failed_for_good if sms else 0) == tally.failed
    assert (sms.fell_back if sms else 0) == sum(1 for _, end in lives if end == "fallback")
    assert (sms.retry_receipts if sms else 0) == sum(r for r, _ in lives)


@given(tasks, st.integers(0, 10_000), st.integers(0, 200))
def test_the_fold_survives_its_own_tally_doc_at_any_point(
    lives: list[tuple[int, str | None]], seed: int, cut: int
) -> None:
    docs = _interleave([_life(k, r, end) for k, (r, end) in enumerate(lives)], seed)
    cut = min(cut, len(docs))
    first = PartitionTallies(0)
    first.fold(parse_receipt(orjson.dumps(d)) for d in docs[:cut])
    restored = PartitionTallies(0)
    restored.load(orjson.loads(orjson.dumps(t.to_doc(k, 0, 1.0))) for k, t in first.tallies.items())
    restored.fold(parse_receipt(orjson.dumps(d)) for d in docs[cut:])
    if docs:
        assert restored.tallies[(ALERT, 1)] == _fold(docs)


def test_a_task_retried_then_delivered_is_delivered_and_no_longer_retrying() -> None:
    tally = _fold(_life(1, 3, "delivered") + _life(2, 2, None))
    sms = tally.channels["sms"]
    assert (sms.delivered, sms.retrying, sms.retry_receipts, sms.max_attempt) == (1, 1, 5, 3)
    assert sms.next_attempt_at == 1000.0 + 1 + 3  # the latest announced
    assert sms.last_retry_reason == "http_503"


def test_receipts_without_the_from_retry_mark_count_by_attempt() -> None:
    """Receipts of workers from before the mark: an attempt above 1 was a retry's."""
    docs = [_doc(1, "retrying", attempt=1, next_attempt_at=5.0)]
    docs += [_doc(1, "retrying", attempt=2, next_attempt_at=9.0)]
    assert _fold(docs).channels["sms"].retrying == 1


def test_tally_with_retries_is_valid_against_its_schema_and_reads_back() -> None:
    tally = _fold(_life(1, 2, "fallback") + _life(2, 1, None) + _life(3, 0, "delivered", "oa"))
    doc = tally.to_doc((ALERT, 1), 0, 5.0)
    validator("delivery").validate(doc)
    assert Tally.from_doc(orjson.loads(orjson.dumps(doc))) == tally
    for receipt in _life(4, 2, "delivered"):
        validator("receipt").validate(receipt)


def test_a_tally_written_before_retries_were_folded_still_reads() -> None:
    old = {
        "alert_id": ALERT,
        "version": 1,
        "partition": 0,
        "delivered": 3,
        "failed": 1,
        "failed_reasons": {"http_400": 1},
        "channels": {"sms": {"delivered": 3, "failed": 1}},
    }
    tally = Tally.from_doc(old)
    assert (tally.channels["sms"].retrying, tally.channels["sms"].failed_for_good) == (0, 1)


def test_status_shows_per_channel_delivered_retrying_with_next_attempt_fell_back_failed() -> None:
    p0 = _fold(_life(1, 1, "delivered") + _life(2, 2, None) + _life(3, 1, "fallback"))
    p1 = _fold(_life(4, 0, "delivered", "oa") + _life(5, 1, None) + _life(6, 0, "failed"))
    tallies = [p0.to_doc((ALERT, 1), 0, 1.0), p1.to_doc((ALERT, 1), 1, 1.0)]
    progress = [
        {"alert_id": ALERT, "version": 1, "partition": p, "targeted": 3, "emitted": 3, "done": True}
        for p in (0, 1)
    ]
    status = summarize(ALERT, 1, 2, progress, tallies)
    sms, oa = status.channels["sms"], status.channels["oa"]
    assert (sms.delivered, sms.retrying, sms.fell_back, sms.failed_for_good) == (1, 2, 1, 1)
    assert sms.next_attempt_at == 1000.0 + 5 + 1 and sms.max_attempt == 2  # the latest
    assert (oa.delivered, oa.retrying) == (1, 0) and oa.next_attempt_at is None
    assert status.retrying == 2 and not status.done  # retrying tasks are pending
    doc = as_json(status)
    # pending: the 2 retrying tasks and the recipient moved to oa (no receipt of that task yet)
    assert doc["retrying"] == 2 and doc["pending"] == 3
    assert doc["channels"]["sms"] == {
        "delivered": 1,
        "retrying": 2,
        "next_attempt_at": 1006.0,
        "max_attempt": 2,
        "retry_reason": "http_503",
        "fell_back": 1,
        "failed_for_good": 1,
    }
    text = render(status)
    assert "retrying               2" in text
    sms_line = next(line for line in text.splitlines() if line.strip().startswith("sms"))
    assert sms_line.split()[:5] == ["sms", "1", "2", "1", "1"]
    assert "next attempt by 1970-01-01 00:16:46 UTC, attempt 3, last http_503" in sms_line
