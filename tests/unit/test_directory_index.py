from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.directory.index import ChangeBatch, DirectoryPartition, decode_changes
from streams.directory.synthetic import encode_subscribers, synthetic_subscribers
from streams.regions import registry


def _batch(rows: list[tuple[int, int, bool]]) -> ChangeBatch:
    n = len(rows)
    return ChangeBatch(
        ids=np.array([r[0] for r in rows], dtype=np.uint64),
        ward=np.array([r[1] for r in rows], dtype=np.uint16),
        channel=np.zeros(n, dtype=np.uint8),
        language=np.zeros(n, dtype=np.uint8),
        flags=np.zeros(n, dtype=np.uint8),
        deleted=np.array([r[2] for r in rows], dtype=np.bool_),
    )


change = st.tuples(st.integers(0, 50), st.integers(0, 3320), st.booleans())


@settings(max_examples=200)
@given(st.lists(st.lists(change, max_size=30), max_size=6), st.integers(1, 40))
def test_last_change_per_recipient_wins_and_tombstones_remove(
    batches: list[list[tuple[int, int, bool]]], compact_after: int
) -> None:
    index = DirectoryPartition()
    expected: dict[int, int] = {}
    for rows in batches:
        index.apply(_batch(rows), compact_after=compact_after)
        for rid, ward, deleted in rows:
            if deleted:
                expected.pop(rid, None)
            else:
                expected[rid] = ward
    index.compact()
    assert dict(zip(index.ids.tolist(), index.ward.tolist(), strict=True)) == expected
    assert index.ids.tolist() == sorted(expected)


def test_index_costs_13_bytes_per_subscriber() -> None:
    r = registry()
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(10_000, 1, r))
    assert len(index) == 10_000
    assert index.nbytes == 13 * 10_000


def test_encoded_changes_decode_to_the_same_subscribers() -> None:
    r = registry()
    subs = synthetic_subscribers(5_000, 3, r, id_base=123_456_789)
    records = encode_subscribers(subs, r)
    batch, errors = decode_changes(records, r)
    assert errors == []
    for name in ("ids", "ward", "channel", "language", "flags"):
        assert (getattr(batch, name) == getattr(subs, name)).all(), name


def test_bad_change_records_are_reported_and_skipped() -> None:
    r = registry()
    good = encode_subscribers(synthetic_subscribers(2, 1, r), r)
    records = [
        good[0],
        (b"7", b"not json"),
        (b"8", b'{"recipient_id": -1, "ward": "VN-01-00004", "channel": "oa", "language": "vi"}'),
        (b"9", b'{"recipient_id": 9, "ward": "VN-01-99999", "channel": "oa", "language": "vi"}'),
        (b"x", None),
        (b"2", None),
    ]
    batch, errors = decode_changes(records, r)
    assert len(errors) == 4
    assert batch.ids.tolist() == [1, 2]
    assert batch.deleted.tolist() == [False, True]


def test_select_by_ward_mask_and_test_audience() -> None:
    r = registry()
    subs = synthetic_subscribers(20_000, 5, r)
    index = DirectoryPartition()
    index.apply(subs)
    mask = r.ward_mask([("/0", "VN-79")])
    everyone = index.select(mask, test_only=False)
    assert set(everyone.ids.tolist()) == set(subs.ids[mask[subs.ward]].tolist())
    testers = index.select(mask, test_only=True)
    assert set(testers.ids.tolist()) == set(subs.ids[mask[subs.ward] & (subs.flags == 1)].tolist())
