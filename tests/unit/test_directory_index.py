from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.directory.files import read_subscribers
from streams.directory.index import NO_CHANNEL, ChangeBatch, DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import decode_changes, encode_subscribers
from streams.records import CATEGORIES
from streams.regions import registry

COLUMNS = ("ids", "ward", "cell", "channel", "channel2", "channel3", "language", "flags", "optout")


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


def _same(a: ChangeBatch, b: ChangeBatch) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in (*COLUMNS, "deleted"))


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


def test_index_costs_25_bytes_per_subscriber() -> None:
    r = registry()
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(10_000, 1, r))
    assert len(index) == 10_000
    assert index.nbytes == 25 * 10_000


def test_a_move_replaces_every_column_of_the_subscriber() -> None:
    r = registry()
    subs = synthetic_subscribers(1_000, 2, r, optout_share=0.5)
    index = DirectoryPartition()
    index.apply(subs)
    moved = synthetic_subscribers(1_000, 3, r, optout_share=0.5).take(slice(100, 200))
    index.apply(moved)
    index.compact()
    for c in COLUMNS:
        assert np.array_equal(getattr(index, c)[100:200], getattr(moved, c)), c


def test_encoded_changes_decode_to_the_same_subscribers() -> None:
    r = registry()
    subs = synthetic_subscribers(5_000, 3, r, id_base=123_456_789, optout_share=0.05)
    records = encode_subscribers(subs, r)
    batch, errors = decode_changes(records, r)
    assert errors == []
    assert _same(batch.last_per_id(), subs)


def test_loa_records_take_the_fast_path_and_others_the_general_one() -> None:
    r = registry()
    subs = synthetic_subscribers(2_000, 4, r, id_base=10**12)
    records = encode_subscribers(subs, r)
    assert all(b'"opted_out":[]}' in v for _, v in records if v)  # the fixed layout
    general, errors = decode_changes(records, r, fast=False)
    assert errors == []
    fast, _ = decode_changes(records, r)
    assert _same(fast, general)
    # another writer's JSON (compact orjson, other field order) reads the same
    other = [(k, orjson.dumps(dict(reversed(orjson.loads(v or b"").items())))) for k, v in records]
    assert _same(decode_changes(other, r)[0], general)


def test_bad_change_records_are_reported_and_skipped() -> None:
    r = registry()
    good = encode_subscribers(synthetic_subscribers(2, 1, r), r)
    ok = {"ward": "VN-01-00004", "channels": ["oa"], "language": "vi"}

    def rec(key: bytes, **doc: object) -> tuple[bytes, bytes]:
        return key, orjson.dumps({**ok, **doc})

    records = [
        good[0],
        (b"7", b"not json"),
        rec(b"8", recipient_id=-1),
        rec(b"9", recipient_id=9, ward="VN-01-99999"),
        rec(b"10", recipient_id=11),  # key is not the id
        rec(b"12", recipient_id=12, channels=["oa", "oa"]),
        rec(b"13", recipient_id=13, channels=[]),
        rec(b"14", recipient_id=14, cell="zzz"),
        rec(b"15", recipient_id=15, cell="85415cb7fffffff"),  # coarser than resolution 7
        rec(b"16", recipient_id=16, opted_out=["Weather"]),
        rec(b"17", recipient_id=17, extra=1),
        rec(b"018", recipient_id=18),  # not canonical
        (b"x", None),
        (b"2", None),
    ]
    batch, errors = decode_changes(records, r)
    assert len(errors) == 12, errors
    assert batch.ids.tolist() == [1, 2]
    assert batch.deleted.tolist() == [False, True]


def test_finer_cells_are_stored_at_the_directory_resolution() -> None:
    r = registry()
    doc = {"recipient_id": 5, "ward": "VN-01-00004", "channels": ["sms", "oa"], "language": "en"}
    fine = "89415cb4e43ffff"  # resolution 9
    batch, errors = decode_changes([(b"5", orjson.dumps({**doc, "cell": fine}))], r)
    assert errors == []
    assert f"{int(batch.cell[0]):x}" == "87415cb4effffff"
    assert (batch.channel[0], batch.channel2[0], batch.channel3[0]) == (2, 0, NO_CHANNEL)


_field_values = st.sampled_from(
    [b"0", b"00", b"1", b"9", b" ", b'"', b"a", b"A", b"f", b"\x00", b"-", b",", b"]", b"n"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 199),
    st.lists(st.tuples(st.integers(0, 200), _field_values), min_size=1, max_size=3),
    st.sampled_from(["key", "value"]),
)
def test_fast_path_never_reads_a_record_differently_from_the_general_path(
    row: int, edits: list[tuple[int, bytes]], where: str
) -> None:
    r = registry()
    subs = synthetic_subscribers(200, 9, r, id_base=9_999_990)
    records = encode_subscribers(subs, r)
    key, value = records[row]
    assert value is not None
    target = bytearray(key if where == "key" else value)
    for pos, byte in edits:
        at = pos % len(target)
        target[at : at + len(byte)] = byte  # overwrite, keeping the length (same layout group)
    edited = bytes(target[: len(key if where == "key" else value)])
    records[row] = (edited, value) if where == "key" else (key, edited)
    fast, fast_errors = decode_changes(records, r)
    general, general_errors = decode_changes(records, r, fast=False)
    assert _same(fast, general)
    assert len(fast_errors) == len(general_errors)


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


def test_opt_outs_withhold_only_alerts_all_of_whose_categories_are_opted_out() -> None:
    r = registry()
    subs = synthetic_subscribers(20_000, 6, r, optout_share=0.3)
    index = DirectoryPartition()
    index.apply(subs)
    everyone = r.ward_mask([("/0", "VN")])
    met, fire = 1 << CATEGORIES.index("Met"), 1 << CATEGORIES.index("Fire")
    got = set(index.select(everyone, test_only=False, exclude_optout=met | fire).ids.tolist())
    withheld = (subs.optout & met != 0) & (subs.optout & fire != 0)
    assert got == set(subs.ids[~withheld].tolist())
    assert 0 < withheld.sum() < len(subs)
    assert len(index.select(everyone, test_only=False, exclude_optout=0)) == len(subs)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_load_reports_each_bad_row_by_line_and_keeps_the_good(tmp_path: Path) -> None:
    r = registry()
    path = _write(
        tmp_path / "subs.csv",
        "recipient_id,ward,channels,language,test_audience,lat,lon,opted_out,unsubscribe\n"
        "1,VN-01-00004,oa|sms,vi,false,21.03,105.85,Met|Fire,\n"
        "2,00004,push,en,true,,,,\n"  # official ward code
        "3,VN-01-99999,oa,vi,,,,,\n"  # line 4: unknown ward
        "4,VN-01-00004,fax,vi,,,,,\n"  # line 5: unknown channel
        "x,VN-01-00004,oa,vi,,,,,\n"  # line 6: bad id
        "6,VN-01-00004,oa,vi,maybe,,,,\n"  # line 7: bad flag
        "7,VN-01-00004,oa,vi,,91,0,,\n"  # line 8: bad latitude
        "8,VN-01-00004,oa\n"  # line 9: too few fields
        "9,,,,,,,,true\n",  # unsubscribe
    )
    batch, bad, rows = read_subscribers(path, r, h3_resolution=7)
    assert rows == 9
    assert [line for line, _ in bad] == [4, 5, 6, 7, 8, 9]
    assert "VN-01-99999" in bad[0][1] and "fax" in bad[1][1]
    assert batch.ids.tolist() == [1, 2, 9]
    assert batch.deleted.tolist() == [False, False, True]
    assert batch.cell[0] != 0 and batch.cell[1] == 0
    assert batch.optout[0] == (1 << CATEGORIES.index("Met")) | (1 << CATEGORIES.index("Fire"))
    assert (batch.channel[0], batch.channel2[0]) == (0, 2)
    assert batch.flags.tolist()[:2] == [0, 1]


def test_jsonl_load_reports_each_bad_row_by_line(tmp_path: Path) -> None:
    r = registry()
    ok = '"ward":"VN-01-00004","channels":["oa"],"language":"vi"'
    path = _write(
        tmp_path / "subs.jsonl",
        f'{{"recipient_id":1,{ok}}}\n'
        "not json\n"
        "\n"
        f'{{"recipient_id":3,{ok},"cell":"87415cb4effffff"}}\n'
        f'{{"recipient_id":4,{ok},"colour":"red"}}\n'
        '{"recipient_id":1,"unsubscribe":true}\n'
        "[1,2]\n",
    )
    batch, bad, rows = read_subscribers(path, r, h3_resolution=7)
    assert [line for line, _ in bad] == [2, 5, 7]
    assert batch.ids.tolist() == [1, 3, 1]
    assert batch.deleted.tolist() == [False, False, True]
    assert len(batch.last_per_id()) == 2
    assert rows == 6
