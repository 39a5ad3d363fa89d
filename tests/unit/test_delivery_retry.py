"""Durable-retry policy, circuit breaker and commit watermarks without Kafka or a provider."""

from __future__ import annotations

import random
from dataclasses import fields

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.delivery.breaker import CircuitBreaker, CircuitState, Endpoint, TokenBucket
from streams.delivery.channels import (
    Answer,
    HttpChannel,
    bulk_key,
    check_url,
    http_options,
    outcome_of_bulk,
)
from streams.delivery.policy import Outcome
from streams.delivery.retry import (
    RetryPolicy,
    deadline,
    expired,
    full_jitter_s,
    settle,
    settled_receipt,
    tier_for,
)
from streams.delivery.watermark import CommitTracker
from streams.schemas import validator
from streams.settings.model import Settings

TASK = {
    "alert_id": "gov.vn/T1",
    "version": 1,
    "kind": "alert",
    "priority": "extreme",
    "recipient_id": 42,
    "channel": "oa",
    "fallback": ["sms"],
    "language": "vi",
    "idempotency_key": "gov.vn/T1:1:42",
}
POLICY = RetryPolicy(
    tiers_s=(1.0, 10.0, 60.0),
    base_s=1.0,
    cap_s=60.0,
    limit_s={"extreme": 3600.0, "severe": 3600.0, "routine": 600.0},
    fallback_after_s={"extreme": 10.0, "severe": 60.0, "routine": 600.0},
)


# -- back-off and tiers --------------------------------------------------------------------------


@given(st.integers(1, 200), st.floats(0, 1, exclude_max=True))
def test_full_jitter_stays_between_zero_and_the_capped_exponential(attempt: int, r: float) -> None:
    wait = full_jitter_s(attempt, base_s=0.5, cap_s=30.0, rand=r)
    assert 0 <= wait <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_tier_is_the_shortest_at_least_as_long_as_the_wait() -> None:
    assert [tier_for(w, (1.0, 10.0, 60.0)) for w in (0, 0.5, 1, 1.01, 59, 61, 1e9)] == [
        1.0,
        1.0,
        1.0,
        10.0,
        60.0,
        60.0,
        60.0,
    ]


# -- settle --------------------------------------------------------------------------------------


def test_a_transient_failure_becomes_a_retry_copy_with_its_due_time_and_a_retrying_receipt() -> (
    None
):
    done = settle(
        {**TASK, "fallback": []}, Outcome.retry("connection"), now=100.0, rand=0.5, policy=POLICY
    )
    assert done.outcome == "retrying" and done.fallback is None
    assert done.retry is not None
    assert (done.retry["attempt"], done.retry["first_attempt_at"]) == (1, 100.0)
    assert done.retry["due_at"] == done.next_attempt_at == 100.5  # 0.5 * 1 s
    assert done.retry["idempotency_key"] == TASK["idempotency_key"]  # same key every attempt
    assert done.tier_s == 1.0
    validator("send_task").validate(done.retry)
    doc = settled_receipt(done.retry, done, worker="w", at=100.0)
    validator("receipt").validate(doc)
    assert (doc["outcome"], doc["reason"], doc["attempt"]) == ("retrying", "connection", 1)
    assert "due_at" not in doc


def test_retry_after_is_honoured_up_to_its_cap_and_picks_a_longer_tier() -> None:
    done = settle(
        {**TASK, "fallback": []},
        Outcome.retry("rate_limited", 30.0),
        now=0.0,
        rand=0.0,
        policy=POLICY,
    )
    assert (done.next_attempt_at, done.tier_s) == (30.0, 60.0)
    capped = RetryPolicy(**{**_fields(POLICY), "max_retry_after_s": 5.0})
    done = settle(
        {**TASK, "fallback": []},
        Outcome.retry("rate_limited", 30.0),
        now=0.0,
        rand=0.0,
        policy=capped,
    )
    assert done.next_attempt_at == 5.0


def test_retries_continue_until_the_alert_expires_then_fail_with_reason_expired() -> None:
    task = {**TASK, "fallback": [], "expires": 1_000}
    now, attempts = 0.0, 0
    rng = random.Random(7)
    while True:
        done = settle(task, Outcome.retry("connection"), now=now, rand=rng.random(), policy=POLICY)
        attempts += 1
        if done.outcome != "retrying":
            break
        assert done.retry is not None and done.next_attempt_at is not None
        assert done.next_attempt_at <= 1_000  # never scheduled past the alert's expiry
        task, now = done.retry, done.next_attempt_at
    assert (done.outcome, done.reason) == ("failed", "expired")
    assert now >= 1_000
    assert attempts > 10  # it kept trying for the whole time the alert was in force


def test_without_expires_the_priority_limit_ends_retries() -> None:
    task = {**TASK, "priority": "routine", "fallback": [], "first_attempt_at": 0.0, "attempt": 3}
    assert deadline(task, POLICY, now=5.0) == 600.0
    assert not expired(task, POLICY, 599.0) and expired(task, POLICY, 600.0)
    done = settle(task, Outcome.retry("timeout"), now=600.0, rand=0.5, policy=POLICY)
    assert (done.outcome, done.reason, done.fallback) == ("failed", "expired", None)


def test_a_permanent_refusal_falls_back_at_once() -> None:
    done = settle(TASK, Outcome.failed("http_400"), now=0.0, rand=0.5, policy=POLICY)
    assert (done.outcome, done.reason) == ("failed", "http_400")
    assert done.fallback is not None and done.fallback["channel"] == "sms"
    assert done.retry is None


def test_a_failing_task_falls_back_after_its_priority_budget_and_not_before() -> None:
    done = settle(TASK, Outcome.retry("http_503"), now=0.0, rand=0.99, policy=POLICY)
    assert done.outcome == "retrying" and done.fallback is None
    assert done.retry is not None
    task = {**done.retry, "attempt": 4}
    # the next attempt is never later than the budget, so the fallback is on time
    done = settle(task, Outcome.retry("http_503"), now=9.0, rand=0.99, policy=POLICY)
    assert done.next_attempt_at == 10.0
    assert done.retry is not None
    done = settle(done.retry, Outcome.retry("http_503"), now=10.0, rand=0.5, policy=POLICY)
    assert (done.outcome, done.reason) == ("failed", "http_503")
    assert done.fallback is not None
    assert done.fallback["idempotency_key"] == "gov.vn/T1:1:42/sms"
    assert "attempt" not in done.fallback and "due_at" not in done.fallback
    validator("send_task").validate(done.fallback)
    doc = settled_receipt(task, done, worker="w", at=10.0)
    assert (doc["outcome"], doc["fallback"]) == ("failed", "sms")


def test_keep_trying_first_retries_the_first_channel_after_falling_back_once() -> None:
    policy = RetryPolicy(**{**_fields(POLICY), "keep_trying_first": True})
    task = {**TASK, "attempt": 2, "first_attempt_at": 0.0}
    done = settle(task, Outcome.retry("timeout"), now=11.0, rand=0.5, policy=policy)
    assert done.outcome == "retrying"
    assert done.fallback is not None and done.retry is not None
    assert done.retry["fell_back"] == "sms"
    again = settle(done.retry, Outcome.retry("timeout"), now=20.0, rand=0.5, policy=policy)
    assert again.outcome == "retrying" and again.fallback is None  # only once


def test_max_attempts_still_ends_a_task_and_falls_back() -> None:
    policy = RetryPolicy(**{**_fields(POLICY), "max_attempts": 2})
    done = settle(
        {**TASK, "attempt": 1}, Outcome.retry("http_500"), now=1.0, rand=0.5, policy=policy
    )
    assert (done.outcome, done.reason, done.attempt) == ("failed", "http_500", 2)
    assert done.fallback is not None


def test_an_open_circuit_floor_delays_the_retry() -> None:
    done = settle(
        {**TASK, "fallback": []},
        Outcome.retry("circuit_open"),
        now=0.0,
        rand=0.0,
        policy=POLICY,
        floor_s=4.0,
    )
    assert done.next_attempt_at == 4.0 and done.tier_s == 10.0


def _fields(policy: RetryPolicy) -> dict[str, object]:
    return {f.name: getattr(policy, f.name) for f in fields(RetryPolicy)}


# -- circuit breaker -----------------------------------------------------------------------------


def test_circuit_opens_after_n_consecutive_failures_probes_after_cooldown_and_closes() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=5.0)
    fail, ok = Outcome.retry("connection"), Outcome.delivered()
    for _ in range(2):
        assert breaker.allow(0.0)
        breaker.record(fail, 0.0)
    breaker.record(ok, 0.0)  # a success resets the count
    for _ in range(3):
        assert breaker.allow(1.0)
        breaker.record(fail, 1.0)
    assert breaker.state is CircuitState.OPEN and breaker.opened == 1
    assert not breaker.allow(5.9) and breaker.retry_in(5.9) == pytest.approx(0.1)
    assert breaker.allow(6.0)  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allow(6.0)  # one probe at a time
    breaker.record(fail, 6.5)  # the probe failed: open again
    assert breaker.state is CircuitState.OPEN and breaker.opened == 2
    assert not breaker.allow(11.0) and breaker.allow(11.5)
    breaker.record(ok, 11.6)
    assert breaker.state is CircuitState.CLOSED and breaker.allow(11.6)


def test_rate_limits_and_permanent_refusals_do_not_open_the_circuit() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0)
    breaker.record(Outcome.retry("rate_limited", 1.0), 0.0)
    breaker.record(Outcome.failed("http_400"), 0.0)
    assert breaker.state is CircuitState.CLOSED


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 2)), max_size=200))
def test_an_open_circuit_lets_no_call_through_before_its_cooldown(
    steps: list[tuple[bool, float]],
) -> None:
    breaker, now = CircuitBreaker(failures=3, cooldown_s=5.0), 0.0
    for failed, dt in steps:
        now += dt
        if breaker.state is CircuitState.OPEN and now < breaker.opened_at + 5.0:
            assert not breaker.allow(now)
            continue
        if breaker.allow(now):
            breaker.record(Outcome.retry("timeout") if failed else Outcome.delivered(), now)


def test_endpoint_retry_after_holds_calls_to_that_endpoint_only() -> None:
    a = Endpoint("http://a", failures=5, cooldown_s=1.0, max_retry_after_s=60.0)
    b = Endpoint("http://b", failures=5, cooldown_s=1.0, max_retry_after_s=60.0)
    a.record(Outcome.retry("rate_limited", 3.0), 10.0)
    refused = a.admit(11.0)
    assert refused is not None and refused.reason == "rate_limited"
    assert refused.after_s == pytest.approx(2.0)
    assert b.admit(11.0) is None
    assert a.admit(13.0) is None


@given(st.floats(1, 1000), st.lists(st.floats(0, 0.5), min_size=1, max_size=300))
def test_token_bucket_never_lets_more_than_rate_times_time_plus_burst(
    rate: float, gaps: list[float]
) -> None:
    bucket, now, calls = TokenBucket(rate, max(rate, 1.0)), 0.0, 0
    for gap in gaps:
        now += gap
        while bucket.wait_s(now) == 0:
            bucket.take(now)
            calls += 1
    assert calls <= max(rate, 1.0) + rate * now + 1e-6


def test_endpoint_rate_limit_paces_calls_and_a_full_bucket_allows_a_burst() -> None:
    endpoint = Endpoint("http://a", failures=5, cooldown_s=1.0, max_retry_after_s=9, rate=2.0)
    assert endpoint.paced_s(0.0) == 0 and endpoint.admit(0.0) is None
    assert endpoint.paced_s(0.0) == 0 and endpoint.admit(0.0) is None  # burst of 2
    assert endpoint.paced_s(0.0) == pytest.approx(0.5)
    assert endpoint.paced_s(0.5) == 0
    unlimited = Endpoint("http://b", failures=5, cooldown_s=1.0, max_retry_after_s=9)
    assert all(unlimited.admit(0.0) is None and unlimited.paced_s(0.0) == 0 for _ in range(99))


# -- commit watermarks ---------------------------------------------------------------------------


def test_commit_stops_below_the_oldest_unsettled_task_and_holds_back_its_followers_records() -> (
    None
):
    tracker: CommitTracker[str, str] = CommitTracker()
    for offset in range(10, 15):
        tracker.add("p0", offset)
    tracker.settle("p0", 11, ["r11"])
    tracker.settle("p0", 12, ["r12a", "r12b"])
    # 10 is still in flight: neither an offset nor 11's and 12's receipts may be committed,
    # or a crash would make the next owner settle 11 and 12 again and receipt them twice
    assert tracker.take() == ({}, [])
    tracker.settle("p0", 10, ["r10"])
    assert tracker.take() == ({"p0": 13}, ["r10", "r11", "r12a", "r12b"])
    tracker.committed({"p0": 13})
    assert tracker.take() == ({}, [])
    tracker.settle("p0", 14, ["r14"])
    tracker.settle("p0", 13)  # a skipped task: nothing to write
    assert tracker.take() == ({"p0": 15}, ["r14"])
    assert tracker.unsettled("p0") == 0


@given(st.permutations(list(range(30))), st.integers(0, 30))
def test_committable_never_passes_an_unsettled_offset_and_releases_each_record_once(
    order: list[int], settled: int
) -> None:
    tracker: CommitTracker[int, int] = CommitTracker()
    for offset in range(30):
        tracker.add(0, offset)
    released: list[int] = []
    commit = None
    for offset in order[:settled]:
        tracker.settle(0, offset, [offset])
        offsets, records = tracker.take()
        released += records
        commit = offsets.get(0, commit)
        if commit is not None:
            tracker.committed({0: commit})
    pending = set(range(30)) - set(order[:settled])
    if pending:
        assert commit == (min(pending) if min(pending) > 0 else None)
    else:
        assert commit == 30
    # exactly the records of the tasks below the committed offset, each once, in offset order
    assert released == list(range(commit or 0))


def test_revoked_partitions_are_forgotten() -> None:
    tracker: CommitTracker[str, str] = CommitTracker()
    tracker.add("p0", 1)
    tracker.add("p0", 2)
    tracker.settle("p0", 2, ["r2"])
    tracker.drop(["p0"])
    tracker.settle("p0", 1, ["r1"])  # an answer that arrives after the revoke
    assert tracker.take() == ({}, []) and not tracker.pending()


# -- http channel options ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://x", "x", "http://", "https:///path", "http://h:99999/"])
def test_provider_urls_other_than_http_with_a_host_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url)


def test_provider_url_with_http_or_https_and_a_host_is_accepted() -> None:
    assert check_url("https://sms.example.vn:8443/v1/send") == "https://sms.example.vn:8443/v1/send"


def test_http_credentials_come_from_files_and_fail_closed(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "token").write_text("s3cret\n")
    (root / "password").write_text("pw\n")
    bearer = Settings(delivery_http_bearer_token_file=str(root / "token"))
    assert http_options(bearer) == {"bearer_token": "s3cret"}
    basic = Settings(
        delivery_http_username="loa", delivery_http_password_file=str(root / "password")
    )
    assert http_options(basic) == {"basic_auth": ("loa", "pw")}
    with pytest.raises(ValueError, match="BEARER_TOKEN_FILE"):
        http_options(Settings(delivery_http_bearer_token_file=str(root / "missing")))
    with pytest.raises(ValueError, match="go together"):
        http_options(Settings(delivery_http_username="loa"))
    with pytest.raises(ValueError, match="CA_FILE"):
        http_options(Settings(delivery_http_ca_file=str(root / "token")))  # not a PEM


def test_delivery_settings_fail_closed() -> None:
    Settings().validate()
    topics = Settings().retry_topics
    assert topics[:4] == [
        "loa.sends.retry.extreme.1s",
        "loa.sends.retry.extreme.10s",
        "loa.sends.retry.extreme.60s",
        "loa.sends.retry.extreme.300s",
    ]
    assert len(topics) == 12 and "loa.sends.retry.routine.300s" in topics
    assert Settings(delivery_retry_tiers_s="0.25").retry_topic("severe", 0.25) == (
        "loa.sends.retry.severe.250ms"
    )
    for bad in (
        {"delivery_retry_tiers_s": "1,x"},
        {"delivery_retry_tiers_s": "0"},
        {"delivery_fallback_after_s": "extreme=1"},
        {"delivery_retry_limit_s": "extreme=1,severe=1,routine=-1"},
        {"delivery_backoff_base_s": 0.0},
    ):
        with pytest.raises(ValueError):
            Settings(**bad).validate()  # type: ignore[arg-type]


# -- the fan-out's tasks carry what delivery needs ------------------------------------------------


def test_send_tasks_carry_the_alerts_expiry_in_unix_seconds() -> None:
    import numpy as np

    from streams.directory.index import DirectoryPartition
    from streams.directory.synthetic import synthetic_subscribers
    from streams.fanout.encode import TaskEncoder
    from streams.fanout.plan import plan_audience
    from streams.records import FanoutOrder, Priority, TaskKind
    from streams.regions import registry

    regions = registry()
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(2_000, 3, regions))
    index.compact()
    order = FanoutOrder("a.vn/X-1", 1, TaskKind.ALERT, Priority.EXTREME, 0, ("VN-22",), False)
    plan = plan_audience(order, index, regions, [])
    assert len(plan.audience) > 0
    check = validator("send_task")
    for expires, expected in (("2026-12-06T20:00:00+07:00", 1_796_562_000), (None, None)):
        encoder = TaskEncoder(FanoutOrder(**{**_order_fields(order), "expires": expires}))
        tasks = [
            orjson.loads(v)
            for _, v in encoder.encode(plan.audience, 0, len(plan.audience), plan.kinds)
        ]
        for task in tasks:
            check.validate(task)
            assert task.get("expires") == expected
    assert np.all(plan.audience.ids >= 0)


def _order_fields(order: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(order)  # type: ignore[call-overload, no-any-return]


# -- bulk calls (LOA_DELIVERY_HTTP_BATCH > 1) ---------------------------------------------------


def _answer(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, headers or {}, orjson.dumps(body))


def test_a_bulk_answer_settles_each_message_on_its_own_status() -> None:
    answer = _answer(
        200,
        {
            "results": [
                {"status": 200},
                {"status": 503},
                {"status": 429, "retry_after": 7},
                {"status": 400},
                {"status": 408},
            ]
        },
    )
    assert outcome_of_bulk(answer, 5) == [
        Outcome.delivered(),
        Outcome.retry("http_503"),
        Outcome.retry("rate_limited", 7.0),
        Outcome.failed("http_400"),
        Outcome.retry("http_408"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"results": [{"status": 200}]},  # fewer results than messages
        {"results": [{"status": 200}] * 3},  # more
        {"results": [{"status": "200"}, {"status": 200}]},  # not a number
        {"results": [{"status": True}, {"status": 200}]},
        {"results": [{"status": 99}, {"status": 200}]},  # not an HTTP status
        {"results": [{}, {"status": 200}]},
        {"results": "ok"},
        {"ok": True},
        [],
        "delivered",
    ],
)
def test_a_bulk_answer_that_does_not_say_which_message_went_retries_them_all(body: object) -> None:
    assert outcome_of_bulk(_answer(200, body), 2) == [Outcome.retry("bad_answer")] * 2
    assert (
        outcome_of_bulk(Answer(200, {}, b"\xff not json"), 2) == [Outcome.retry("bad_answer")] * 2
    )


def test_a_bulk_call_answered_as_a_whole_applies_its_status_to_every_message() -> None:
    assert outcome_of_bulk(_answer(503, {}), 3) == [Outcome.retry("http_503")] * 3
    limited = outcome_of_bulk(Answer(429, {"retry-after": "4"}, b""), 2)
    assert limited == [Outcome.retry("rate_limited", 4.0)] * 2
    assert outcome_of_bulk(_answer(401, {}), 2) == [Outcome.failed("http_401")] * 2


def test_the_bulk_idempotency_key_depends_on_every_message_key_and_their_order() -> None:
    a, b = {"idempotency_key": "a/1:1:1"}, {"idempotency_key": "a/1:1:2"}
    assert bulk_key([a, b]) == bulk_key([dict(a), dict(b)])
    assert len({bulk_key([a, b]), bulk_key([b, a]), bulk_key([a])}) == 3
    assert bulk_key([a]).startswith("bulk-")


def test_a_bulk_call_is_one_answer_for_the_breaker_and_every_retry_after_closes_the_gate() -> None:
    endpoint = Endpoint("http://a", failures=2, cooldown_s=1.0, max_retry_after_s=60.0)
    # answered calls with single refused messages are a well endpoint: the circuit stays closed
    for now in range(5):
        endpoint.record_call([Outcome.retry("http_503"), Outcome.delivered()], float(now))
    assert endpoint.breaker.state is CircuitState.CLOSED
    # two calls nobody answered open it (failures=2), whatever their size
    endpoint.record_call([Outcome.retry("connection")] * 50, 10.0)
    assert endpoint.breaker.state is CircuitState.CLOSED
    endpoint.record_call([Outcome.retry("timeout")] * 50, 11.0)
    assert endpoint.breaker.state is CircuitState.OPEN
    other = Endpoint("http://b", failures=2, cooldown_s=1.0, max_retry_after_s=60.0)
    other.record_call([Outcome.delivered(), Outcome.retry("rate_limited", 9.0)], 0.0)
    assert other.admit(1.0) == Outcome.retry("rate_limited", 8.0)
    other.record_call([], 2.0)  # nothing to record
    assert other.breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("batch", [0, -1, 1001])
def test_an_http_channel_batch_outside_1_to_1000_is_refused(batch: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        HttpChannel("http://provider.example/bulk", batch=batch)


def test_the_batch_setting_fails_closed() -> None:
    with pytest.raises(ValueError, match="LOA_DELIVERY_HTTP_BATCH"):
        Settings(delivery_http_batch=0).validate()
    Settings(delivery_http_batch=500).validate()
