"""The directory census counts what the fan-out would select (before opt-outs), and its wire
form refuses garbage with one clear error."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import h3
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.directory.census import (
    CENSUS_VERSION,
    Census,
    CensusUnusable,
    audience_reach,
    build_census,
    decode_census,
    encode_census,
)
from streams.directory.index import ChangeBatch, DirectoryPartition
from streams.directory.synthetic import location_pool
from streams.fanout.plan import audience_rows
from streams.records import CATEGORIES, CHANNELS, FanoutOrder, Priority, TaskKind
from streams.regions import registry
from streams.settings.load import load_settings

R = registry()
POOL7 = location_pool(7)[:: max(1, len(location_pool(7)) // 12)][:12]
#: A few cells one resolution finer (a directory written at another resolution, or mixed).
POOL8 = np.array([h3.str_to_int(h3.cell_to_center_child(h3.int_to_str(int(c)), 8)) for c in POOL7])
#: Wards in two provinces (so province and ward codes overlap the shapes' subscribers).
WARDS = [int(i) for i in np.flatnonzero(R.ward_mask([("/0", "VN-01")]))[:4]] + [
    int(i) for i in np.flatnonzero(R.ward_mask([("/0", "VN-79")]))[:3]
]
CODES = ["VN", "VN-01", "VN-79", *(R.ward_codes[w] for w in WARDS[::2])]


def _census(index: DirectoryPartition, p: int, made_at: float = 100.0) -> Census:
    return build_census(
        index.columns(), partition=p, offset=len(index), made_at=made_at, regions=R, h3_resolution=7
    )


@st.composite
def directories(draw: st.DrawFn) -> tuple[list[DirectoryPartition], bool]:
    """A random directory over a few partitions; mixed resolutions sometimes (the slow path)."""
    n = draw(st.integers(0, 250))
    mixed = draw(st.booleans())
    pool = np.concatenate([POOL7, POOL8]) if mixed else POOL7
    ints = st.lists(st.integers(0, 2**16), min_size=n, max_size=n)
    pick = [np.array(draw(ints), dtype=np.int64) for _ in range(5)]
    located = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=np.bool_)
    batch = ChangeBatch(
        ids=np.arange(1, n + 1, dtype=np.uint64),
        ward=np.array(WARDS, dtype=np.uint16)[pick[0] % len(WARDS)],
        channel=(pick[1] % len(CHANNELS)).astype(np.uint8),
        language=np.zeros(n, dtype=np.uint8),
        flags=(pick[2] % 4).astype(np.uint8),  # bit 1 is not the test flag: ignored
        deleted=np.zeros(n, dtype=np.bool_),
        cell=np.where(located, pool[pick[3] % len(pool)], 0).astype(np.uint64),
        optout=(pick[4] % (1 << len(CATEGORIES))).astype(np.uint16),
    )
    parts = draw(st.integers(1, 3))
    indexes = []
    for p in range(parts):
        index = DirectoryPartition()
        index.apply(batch.take(batch.ids % np.uint64(parts) == p))
        index.compact()
        indexes.append(index)
    return indexes, mixed


@st.composite
def areas(draw: st.DrawFn) -> tuple[str, ...]:
    """Compacted-looking cell sets: some pool cells, some of their parents (mixed resolutions)."""
    chosen = draw(st.lists(st.sampled_from([int(c) for c in POOL7]), max_size=5, unique=True))
    cells = []
    for c in chosen:
        up = draw(st.sampled_from([7, 6, 5]))
        cells.append(h3.cell_to_parent(h3.int_to_str(c), up) if up < 7 else h3.int_to_str(c))
    return tuple(sorted(set(cells)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    directories(),
    st.lists(st.sampled_from(CODES), max_size=2, unique=True),
    areas(),
    st.booleans(),
    st.sampled_from(list(Priority)),
)
def test_reach_is_the_number_of_rows_the_fanout_selects_before_optouts_per_channel(
    directory: tuple[list[DirectoryPartition], bool],
    targets: list[str],
    cells: tuple[str, ...],
    test_only: bool,
    priority: Priority,
) -> None:
    indexes, _ = directory
    order = FanoutOrder(
        "a.vn/T-1", 1, TaskKind.ALERT, priority, 0, tuple(targets), test_only, cells
    )
    # brute force: the fan-out's own selection, with opt-outs out of play (extreme alerts)
    no_optouts = replace(order, priority=Priority.EXTREME, categories=("Met",))
    want = np.zeros(len(CHANNELS), dtype=np.int64)
    by_ward = 0
    mask = R.ward_mask((f"/{i}", c) for i, c in enumerate(targets))
    for index in indexes:
        rows = audience_rows(no_optouts, index, R)
        want += np.bincount(index.channel[rows], minlength=len(CHANNELS))
        by_ward += int(np.count_nonzero(rows & mask[index.ward]))
    # through the wire, as a reader gets them
    censuses = {p: decode_census(encode_census(_census(ix, p))) for p, ix in enumerate(indexes)}
    got = audience_reach(
        censuses, R, targets=targets, cells=cells, test_only=test_only, partitions=len(indexes)
    )
    assert got.by_channel == dict(zip(CHANNELS, want.tolist(), strict=True))
    assert got.total == int(want.sum())
    assert got.by_region_codes == by_ward
    assert got.located_only == got.total - by_ward
    assert (got.partitions_counted, got.partitions, got.complete) == (len(indexes),) * 2 + (True,)


@settings(max_examples=50, deadline=None)
@given(directories())
def test_census_survives_the_wire_unchanged(
    directory: tuple[list[DirectoryPartition], bool],
) -> None:
    index = directory[0][0]
    census = _census(index, 0)
    back = decode_census(encode_census(census))
    for name in ("ward_counts", "cells", "runs", "ward", "kind", "count"):
        assert np.array_equal(getattr(back, name), getattr(census, name)), name
    assert (back.partition, back.offset, back.made_at, back.regions, back.channels) == (
        0,
        census.offset,
        100.0,
        census.regions,
        CHANNELS,
    )
    assert back.subscribers == len(index)
    assert back.located == int(np.count_nonzero(index.cell))


def _sample() -> bytes:
    index = DirectoryPartition()
    n = 500
    rng = np.random.default_rng(3)
    index.apply(
        ChangeBatch(
            ids=np.arange(1, n + 1, dtype=np.uint64),
            ward=rng.choice(WARDS, n).astype(np.uint16),
            channel=rng.integers(0, len(CHANNELS), n).astype(np.uint8),
            language=np.zeros(n, dtype=np.uint8),
            flags=rng.integers(0, 2, n).astype(np.uint8),
            deleted=np.zeros(n, dtype=np.bool_),
            cell=np.where(rng.random(n) < 0.7, rng.choice(POOL7, n), 0).astype(np.uint64),
        )
    )
    return encode_census(_census(index, 0))


SAMPLE = _sample()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_is_refused_with_census_unusable(raw: bytes) -> None:
    with pytest.raises(CensusUnusable):
        decode_census(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SAMPLE) - 1), st.integers(1, 255), st.booleans())
def test_a_damaged_census_is_refused_or_decodes_to_a_consistent_census(
    at: int, xor: int, truncate: bool
) -> None:
    raw = SAMPLE[:at] if truncate else SAMPLE[:at] + bytes([SAMPLE[at] ^ xor]) + SAMPLE[at + 1 :]
    try:
        census = decode_census(raw)
    except CensusUnusable:
        return
    # a flip the checks cannot see (a count, a time) still leaves arrays a reader can count
    assert int(census.runs.sum()) == census.ward.shape[0] == census.count.shape[0]
    assert int(census.ward.max(initial=0)) < census.n_wards


def _with_header(**changes: object) -> bytes:
    magic, version, length = struct.unpack_from(">10sHI", SAMPLE)
    header = orjson.loads(SAMPLE[16 : 16 + length])
    body = SAMPLE[16 + length :]
    version = int(changes.pop("version", version))  # type: ignore[call-overload]
    header.update(changes)
    new = orjson.dumps(header)
    return struct.pack(">10sHI", magic, version, len(new)) + new + body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_with_header(version=CENSUS_VERSION + 1), "format version"),
        (_with_header(body_bytes=10**12), "body size"),
        (_with_header(rows=10**7), "body size"),
        (_with_header(channels="oa"), "channels"),
        (_with_header(offset=-1), "offset"),
        (SAMPLE[:16] + b"[1, 2]" + SAMPLE[22:], "not"),
        (b"LOA-CENSUS" + b"\0" * 3, "no census magic"),
    ],
)
def test_each_broken_header_is_named(raw: bytes, reason: str) -> None:
    with pytest.raises(CensusUnusable, match=reason):
        decode_census(raw)


def test_a_body_that_inflates_past_its_announced_size_is_refused_without_inflating_it() -> None:
    (length,) = struct.unpack_from(">I", SAMPLE, 12)
    header = SAMPLE[16 : 16 + length]
    bomb = zlib.compress(b"\0" * (32 * 1024 * 1024), 9)  # 32 MiB of zeros in about 32 KB
    with pytest.raises(CensusUnusable, match="longer than announced"):
        decode_census(SAMPLE[:16] + header + bomb)


def test_a_missing_or_foreign_partition_makes_the_reach_partial() -> None:
    index = DirectoryPartition()
    index.apply(
        ChangeBatch(
            ids=np.array([1, 2], dtype=np.uint64),
            ward=np.array(WARDS[:2], dtype=np.uint16),
            channel=np.array([0, 2], dtype=np.uint8),
            language=np.zeros(2, dtype=np.uint8),
            flags=np.zeros(2, dtype=np.uint8),
            deleted=np.zeros(2, dtype=np.bool_),
        )
    )
    fresh, old = _census(index, 0, made_at=200.0), _census(index, 2, made_at=150.0)
    foreign = replace(_census(index, 1), regions="another registry")
    got = audience_reach(
        {0: fresh, 1: foreign, 2: old, 9: fresh},
        R,
        targets=["VN"],
        cells=(),
        test_only=False,
        partitions=4,
    )
    assert (got.partitions_counted, got.partitions, got.complete) == (2, 4, False)
    assert got.as_of == 150.0
    assert got.by_channel == {"oa": 2, "push": 0, "sms": 2}
    assert got.to_doc()["total"] == 4
    nobody = audience_reach({0: fresh}, R, targets=["VN"], cells=(), test_only=True, partitions=1)
    assert nobody.total == 0 and nobody.as_of == 200.0


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "ten"])
def test_an_unusable_census_interval_stops_with_a_clear_error(raw: str) -> None:
    with pytest.raises(ValueError, match="LOA_CENSUS_INTERVAL_S"):
        load_settings({"LOA_CENSUS_INTERVAL_S": raw})
    assert load_settings({}).census_interval_s == 10.0
    assert load_settings({"LOA_CENSUS_INTERVAL_S": "2.5"}).census_interval_s == 2.5


def test_reach_converts_to_ingests_reach_field_for_field() -> None:
    index = DirectoryPartition()
    index.apply(
        ChangeBatch(
            ids=np.array([1], dtype=np.uint64),
            ward=np.array(WARDS[:1], dtype=np.uint16),
            channel=np.array([1], dtype=np.uint8),
            language=np.zeros(1, dtype=np.uint8),
            flags=np.zeros(1, dtype=np.uint8),
            deleted=np.zeros(1, dtype=np.bool_),
        )
    )
    got = audience_reach(
        {0: _census(index, 0)}, R, targets=["VN"], cells=(), test_only=False, partitions=2
    )
    assert (got.complete, got.total, got.by_channel["push"]) == (False, 1, 1)
    assert got.to_doc()["complete"] is False
