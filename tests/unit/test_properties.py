"""Property tests (hypothesis) of the pure policy: plan, lifecycle fingerprint, throttle, receipts.

Each property is the README's promise stated for all inputs, checked against a model written
here (counting, not reusing the code under test).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.demo.oracle import Rows, expected_audience
from streams.directory.index import DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.errors import MalformedInput
from streams.fanout.encode import KINDS
from streams.fanout.plan import CapPolicy, PastOrder, plan_audience
from streams.fanout.throttle import ChannelThrottle
from streams.ingest.lifecycle import told
from streams.receipts.fold import PartitionTallies, Receipt, Tally, parse_receipt
from streams.records import CHANNELS, AcceptedAlert, AlertInfo, FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.schemas import validator
from streams.settings.load import load_settings

R = registry()
ALERT, UPDATE, CANCEL = (KINDS.index(k) for k in TaskKind)
FIXTURE_OK = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- plan ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> tuple[DirectoryPartition, Rows]:
    batch = synthetic_subscribers(20_000, 9, R)
    d = DirectoryPartition()
    d.apply(batch)
    d.compact()
    rows = Rows.from_batch(batch, R.ward_codes)
    return d, rows


def oracle(rows: Rows, targets: tuple[str, ...]) -> set[int]:
    doc = {"info": [{"area": [{"regions": list(targets)}]}]}
    return set(expected_audience(doc, rows).sure)


few_provinces = st.lists(st.sampled_from(R.province_codes[:8]), min_size=1, max_size=3, unique=True)


def order(version: int, kind: TaskKind, targets: list[str], **kw: Any) -> FanoutOrder:
    o = FanoutOrder("a.vn/P", version, kind, Priority.EXTREME, 0, tuple(targets), False)
    return replace(o, **kw)


@FIXTURE_OK
@given(few_provinces, few_provinces, st.booleans(), st.floats(0.0, 1.0))
def test_update_plan_matches_the_lineage_model(
    world: tuple[DirectoryPartition, Rows],
    first: list[str],
    second: list[str],
    changed: bool,
    progress: float,
) -> None:
    """new = targeted and not served -> alert; served -> update iff changed; never twice."""
    index, rows = world
    v1 = order(1, TaskKind.ALERT, first)
    audience1 = sorted(oracle(rows, v1.targets))
    cut = int(progress * len(audience1))
    served = set(audience1[:cut])
    cursor = audience1[cut - 1] if cut else -1
    v2 = order(2, TaskKind.UPDATE, second, changed=changed)
    plan = plan_audience(v2, index, R, [PastOrder(v1, cursor, 0.0)])
    got = dict(zip(plan.audience.ids.tolist(), plan.kinds.tolist(), strict=True))
    assert len(got) == len(plan.audience.ids)  # one task per recipient
    targeted = oracle(rows, v2.targets)
    assert {r for r, k in got.items() if k == ALERT} == targeted - served
    assert {r for r, k in got.items() if k == UPDATE} == (served if changed else set())
    assert plan.suppressed.get("duplicate", 0) == (0 if changed else len(targeted & served))


@FIXTURE_OK
@given(few_provinces, st.floats(0.0, 1.0))
def test_cancel_reaches_exactly_those_served(
    world: tuple[DirectoryPartition, Rows], first: list[str], progress: float
) -> None:
    index, rows = world
    v1 = order(1, TaskKind.ALERT, first)
    audience1 = sorted(oracle(rows, v1.targets))
    cut = int(progress * len(audience1))
    cursor = audience1[cut - 1] if cut else -1
    plan = plan_audience(order(2, TaskKind.CANCEL, first), index, R, [PastOrder(v1, cursor, 0.0)])
    assert set(plan.audience.ids.tolist()) == set(audience1[:cut])
    assert set(plan.kinds.tolist()) <= {CANCEL}


@FIXTURE_OK
@given(st.integers(0, 4), st.integers(0, 5), st.sampled_from(list(Priority)))
def test_caps_suppress_only_routine_alerts_past_the_count(
    world: tuple[DirectoryPartition, Rows], count: int, others: int, priority: Priority
) -> None:
    """count 0 means no cap; otherwise a recipient reached by >= count other routine lineages
    in the window is suppressed, and only for routine alerts."""
    index, rows = world
    region = ["VN-01"]
    targeted = oracle(rows, ("VN-01",))
    history = []
    for i in range(others):
        past = FanoutOrder(f"o/{i}", 1, TaskKind.ALERT, Priority.ROUTINE, 0, ("VN-01",), False)
        history.append(PastOrder(past, int(index.ids[-1]), 100.0))
    now = order(1, TaskKind.ALERT, region, priority=priority, alert_id="new/1")
    plan = plan_audience(now, index, R, history, CapPolicy(count, 3600.0, 200.0))
    capped = priority is Priority.ROUTINE and count > 0 and others >= count
    assert set(plan.audience.ids.tolist()) == (set() if capped else targeted)
    assert plan.suppressed.get("cap", 0) == (len(targeted) if capped else 0)


@pytest.mark.parametrize("env", [{"LOA_CAP_COUNT": "-1"}, {"LOA_CAP_WINDOW_S": "-5"}])
def test_a_negative_cap_setting_stops_with_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="LOA_CAP_COUNT and LOA_CAP_WINDOW_S must be >= 0"):
        load_settings(env)


def test_cap_count_zero_is_a_valid_setting_meaning_no_cap() -> None:
    assert load_settings({"LOA_CAP_COUNT": "0"}).cap_count == 0


def test_caps_ignore_lineages_outside_the_window(world: tuple[DirectoryPartition, Rows]) -> None:
    index, rows = world
    old = FanoutOrder("o/1", 1, TaskKind.ALERT, Priority.ROUTINE, 0, ("VN-01",), False)
    new = order(1, TaskKind.ALERT, ["VN-01"], priority=Priority.ROUTINE, alert_id="new/1")
    history = [PastOrder(old, int(index.ids[-1]), 0.0)]
    plan = plan_audience(new, index, R, history, CapPolicy(1, 100.0, 101.0))
    assert set(plan.audience.ids.tolist()) == oracle(rows, ("VN-01",))


# --- lifecycle fingerprint -------------------------------------------------------------------

text = st.text(max_size=20)
infos = st.builds(
    AlertInfo,
    language=st.sampled_from(["vi-VN", "en-US", "fr-FR"]),
    event=text,
    headline=text,
    severity=st.sampled_from(["Extreme", "Severe", "Moderate", "Minor", "Unknown"]),
    urgency=st.sampled_from(["Immediate", "Expected", "Future", "Past", "Unknown"]),
    description=st.none() | text,
    instruction=st.none() | text,
)
expiries = st.none() | st.sampled_from(["2026-09-06T12:00:00+07:00", "2026-09-07T12:00:00+07:00"])


def accepted(infos_: list[AlertInfo], expires: str | None) -> AcceptedAlert:
    return AcceptedAlert(
        "s/1", 1, "s/1", "s", "1", "2026-09-06T08:00:00+07:00", "Actual", "Alert",
        Priority.EXTREME, ("VN",), False, expires, tuple(infos_), "2026-09-06T01:00:00+00:00",
    )  # fmt: skip


#: What the README says recipients are told about (an Update changing one of them is "changed").
TOLD_FIELDS = ("language", "headline", "instruction", "severity", "urgency")


@given(st.lists(infos, min_size=1, max_size=3), expiries, st.data())
def test_any_change_to_what_recipients_were_told_changes_the_fingerprint(
    blocks: list[AlertInfo], expires: str | None, data: st.DataObject
) -> None:
    before = accepted(blocks, expires)
    what = data.draw(st.sampled_from([*TOLD_FIELDS, "expires", "event", "description"]))
    if what == "expires":
        after = replace(before, expires=data.draw(expiries))
        differs = after.expires != before.expires
    else:
        i = data.draw(st.integers(0, len(blocks) - 1))
        value = data.draw(st.one_of(st.none(), text) if what == "instruction" else text)
        if what in ("severity", "urgency", "language"):
            value = data.draw(st.sampled_from(["Extreme", "Immediate", "vi-VN", "Unknown", "x"]))
        changed = list(blocks)
        changed[i] = replace(blocks[i], **{what: value})
        after = replace(before, infos=tuple(changed))
        differs = what in TOLD_FIELDS and getattr(blocks[i], what) != value
    assert (told(after) != told(before)) == differs


# --- throttle --------------------------------------------------------------------------------


def simulate(
    limits: dict[str, float], mix: list[float], chunks: int, seed: int
) -> tuple[list[tuple[float, Counter[str]]], int]:
    """Emit ``chunks`` chunks as the scheduler does (size, reserve, wait the debt, emit)."""
    rng = np.random.default_rng(seed)
    throttle = ChannelThrottle()
    throttle.configure(limits, share=1.0, now=0.0)
    t = 0.0
    emitted = []
    size = throttle.chunk_limit(65_536)
    for _ in range(chunks):
        size = throttle.chunk_limit(65_536)
        channels = rng.choice(len(CHANNELS), size=size, p=mix).astype(np.uint8)
        waits = throttle.reserve(channels, t)
        t += max(waits.values(), default=0.0)
        emitted.append((t, Counter(CHANNELS[c] for c in channels.tolist())))
    return emitted, size


@settings(deadline=None)
@given(
    st.floats(5.0, 400.0),
    st.floats(5.0, 4000.0),
    st.sampled_from([(0.5, 0.5, 0.0), (0.9, 0.1, 0.0), (0.1, 0.9, 0.0), (0.45, 0.45, 0.1)]),
    st.integers(0, 1000),
)
def test_two_throttled_channels_never_exceed_each_limit_plus_one_chunk(
    slow: float, fast: float, mix: tuple[float, float, float], seed: int
) -> None:
    limits = {"oa": slow, "push": fast}
    emitted, _ = simulate(limits, list(mix), 120, seed)
    chunk = max(1, int(min(slow, fast) * 0.1))  # README: a tenth of a second of the slowest
    for start, _ in emitted:
        window = Counter[str]()
        for at, counts in emitted:
            if start <= at < start + 1.0 - 1e-9:  # a window of one second, float-safe
                window.update(counts)
        for channel, rate in limits.items():
            assert window[channel] <= rate + chunk, (channel, rate, chunk, window)


@settings(deadline=None)
@given(st.floats(0.0, 1000.0), st.integers(1, 5000))
def test_a_limit_of_zero_blocks_its_channel(other: float, size: int) -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 0.0, "oa": other}, share=1.0, now=0.0)
    assert throttle.chunk_limit(65_536) == 1
    waits = throttle.reserve(np.full(size, CHANNELS.index("sms"), dtype=np.uint8), 0.0)
    assert waits["sms"] >= 3600.0
    # and time does not bring tokens to a channel with no budget
    waits = throttle.reserve(np.full(1, CHANNELS.index("sms"), dtype=np.uint8), 10_000.0)
    assert waits["sms"] >= 3600.0


# --- receipts fold ---------------------------------------------------------------------------

receipts = st.builds(
    Receipt,
    alert_id=st.sampled_from(["a/1", "b/2"]),
    version=st.integers(1, 3),
    channel=st.sampled_from(CHANNELS),
    outcome=st.sampled_from(["delivered", "failed"]),
    reason=st.none() | st.sampled_from(["timeout", "unreachable"]),
)


@given(st.lists(st.lists(receipts, max_size=30), max_size=4))
def test_fold_tallies_every_receipt_per_alert_channel_and_outcome(
    batches: list[list[Receipt]],
) -> None:
    state = PartitionTallies(0)
    total: Counter[tuple[str, int, str, str]] = Counter()
    for batch in batches:
        changed, counts = state.fold(batch)
        assert changed == {(r.alert_id, r.version) for r in batch}
        assert counts == Counter((r.channel, r.outcome) for r in batch)
        total.update((r.alert_id, r.version, r.channel, r.outcome) for r in batch)
    for (alert_id, version), tally in state.tallies.items():
        mine = {k: n for k, n in total.items() if k[:2] == (alert_id, version)}
        assert tally.delivered == sum(n for k, n in mine.items() if k[3] == "delivered")
        assert tally.failed == sum(n for k, n in mine.items() if k[3] == "failed")
        assert sum(tally.failed_reasons.values()) == tally.failed
        for channel in CHANNELS:
            for outcome in ("delivered", "failed"):
                want = mine.get((alert_id, version, channel, outcome), 0)
                counted = tally.channels.get(channel)
                assert (getattr(counted, outcome) if counted else 0) == want
        doc = tally.to_doc((alert_id, version), 0, 1.0)
        validator("delivery").validate(doc)
        assert Tally.from_doc(orjson.loads(orjson.dumps(doc))) == tally


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # not orjson: it refuses integers past 64 bits


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
receipt_like = st.fixed_dictionaries(
    {},
    optional={
        "alert_id": json_values | st.just("a/1"),
        "version": json_values | st.integers(-2, 2**70),
        "channel": json_values | st.sampled_from(CHANNELS),
        "outcome": json_values | st.sampled_from(["delivered", "failed"]),
        "reason": json_values,
    },
)


def receipt_bytes(**fields: Any) -> bytes:
    doc = {"alert_id": "a/1", "version": 1, "channel": "oa", "outcome": "delivered"}
    return json_bytes({**doc, **fields})


@example(receipt_bytes(version=True))
@example(receipt_bytes(version=2**64))
@example(receipt_bytes(channel="carrier-pigeon"))
@example(receipt_bytes(channel=["oa"]))
@example(receipt_bytes(outcome="failed", reason={"deep": [1, 2]}))
@given(st.one_of(receipt_like, json_values).map(json_bytes) | st.binary(max_size=64))
def test_a_receipt_is_either_refused_or_folded_and_written_never_an_endless_retry(
    raw: bytes,
) -> None:
    """What the receipts agent does with one record must not raise past ``MalformedInput``: any
    other error aborts the batch and the agent re-reads the same record forever."""
    try:
        receipt = parse_receipt(raw)
    except MalformedInput:
        return
    state = PartitionTallies(0)
    changed, counts = state.fold([receipt])
    for key in changed:
        doc = state.tallies[key].to_doc(key, 0, 1.0)
        orjson.dumps(doc)
        validator("delivery").validate(doc)
    assert set(counts) <= {(c, o) for c in CHANNELS for o in ("delivered", "failed")}


@pytest.mark.parametrize(
    ("raw", "pointer", "says"),
    [
        (b"", "", "empty"),
        (b"[1]", "", "not a JSON object"),
        (b"{x", "", "not JSON"),
        (receipt_bytes(alert_id=None), "/version", "alert_id/version"),
        (receipt_bytes(version=0), "/version", "alert_id/version"),
        (receipt_bytes(version=True), "/version", "alert_id/version"),
        (receipt_bytes(outcome="lost"), "/outcome", 'outcome "lost"'),
        (receipt_bytes(channel="fax"), "/channel", 'channel "fax"'),
        (b'{"alert_id": "a", "version": 1, "outcome": "failed"}', "/channel", "lacks channel"),
    ],
)
def test_a_malformed_receipt_says_what_is_wrong_and_where(
    raw: bytes, pointer: str, says: str
) -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_receipt(raw)
    assert caught.value.pointer == pointer
    assert says in caught.value.message


def test_a_failed_receipt_without_reason_is_tallied_as_unspecified() -> None:
    receipt = parse_receipt(receipt_bytes(outcome="failed"))
    assert receipt.reason == "unspecified"
    assert parse_receipt(receipt_bytes(outcome="failed", reason="x" * 100)).reason == "x" * 64
    assert parse_receipt(receipt_bytes(reason="timeout")).reason is None  # delivered: no reason


def test_a_channel_slower_than_one_per_second_sends_at_its_rate() -> None:
    throttle = ChannelThrottle()
    throttle.configure({"sms": 0.5}, share=1.0, now=0.0)
    one = np.full(1, CHANNELS.index("sms"), dtype=np.uint8)
    assert throttle.reserve(one, 0.0) == {}  # the burst of one task
    assert throttle.reserve(one, 0.0) == {"sms": pytest.approx(2.0)}


def test_a_failed_receipt_built_without_reason_counts_as_unspecified() -> None:
    state = PartitionTallies(0)
    state.fold([Receipt("a/1", 1, "sms", "failed", None)])
    assert state.tallies["a/1", 1].failed_reasons == Counter({"unspecified": 1})
