"""The independent audience oracle (streams/demo/oracle.py) against region targeting and selection.

The fan-out's audience must equal what plain string prefixes and plain geometry say; the oracle
shares no code with streams.regions or streams.fanout, so a fault in either shows up here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import h3
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import streams.regions as regions_module
from streams.demo.oracle import (
    Expected,
    Rows,
    expected_audience,
    haversine_km,
    in_polygon,
    polygon_boundary_km,
    tolerance_km,
)
from streams.directory.index import ChangeBatch, DirectoryPartition
from streams.directory.synthetic import CITY_BOXES, synthetic_subscribers
from streams.directory.wire import encode_subscribers
from streams.errors import SchemaViolation
from streams.fanout.plan import select_audience
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import RegionRegistry, registry, resolve_targets

R = registry()
N = 30_000
HANOI = CITY_BOXES[0]


def rows_of(batch: ChangeBatch) -> Rows:
    """The raw rows of a batch: the records the changes topic carries, decoded as JSON."""
    return Rows.from_records(
        orjson.loads(value) for _, value in encode_subscribers(batch, R) if value
    )


@pytest.fixture(scope="module")
def batch() -> ChangeBatch:
    return synthetic_subscribers(N, 5, R)


@pytest.fixture(scope="module")
def rows(batch: ChangeBatch) -> Rows:
    return rows_of(batch)


@pytest.fixture(scope="module")
def index(batch: ChangeBatch) -> DirectoryPartition:
    d = DirectoryPartition()
    d.apply(batch)
    d.compact()
    return d


def doc(area: dict[str, Any], status: str = "Actual") -> dict[str, Any]:
    return {"status": status, "msgType": "Alert", "info": [{"area": [area]}]}


def loa_audience(
    d: dict[str, Any], index: DirectoryPartition, regions: RegionRegistry = R
) -> set[int]:
    """What the fan-out selects for ``d`` (ingest's area resolution, then selection)."""
    targets = resolve_targets(d["info"], regions)
    order = FanoutOrder(
        "t/1",
        1,
        TaskKind.ALERT,
        Priority.EXTREME,
        0,
        targets.codes,
        d["status"] != "Actual",
        cells=targets.cells,
    )
    return set(select_audience(order, index, regions).ids.tolist())


def test_rows_from_a_batch_are_the_rows_on_the_wire(batch: ChangeBatch, rows: Rows) -> None:
    direct = Rows.from_batch(batch, R.ward_codes)
    order = np.argsort(rows.ids)
    assert (direct.ids == rows.ids[order]).all() and (direct.ward == rows.ward[order]).all()
    assert (direct.test_audience == rows.test_audience[order]).all()
    assert np.array_equal(direct.lat, rows.lat[order], equal_nan=True)


# --- the oracle's own rules ------------------------------------------------------------------


def test_prefix_matches_whole_segments_only() -> None:
    rows = Rows.of([1, 2, 3], ["VN-01-00004", "VN-10-00001", "VN-79-26734"], [False] * 3, [0] * 3)
    assert expected_audience(doc({"regions": ["VN-01"]}), rows).sure == {1}
    assert expected_audience(doc({"regions": ["VN"]}), rows).sure == {1, 2, 3}
    assert expected_audience(doc({"regions": ["VN-79-26734"]}), rows).sure == {3}
    geocodes = [
        {"valueName": "VN-PROVINCE", "value": "10"},
        {"valueName": "VN-WARD", "value": "00004"},
    ]
    assert expected_audience(doc({"geocode": geocodes}), rows).sure == {1, 2}


def test_exercise_reaches_only_the_test_audience_and_draft_nobody() -> None:
    rows = Rows.of([1, 2], ["VN-01-00004", "VN-01-00008"], [True, False], [0, 0])
    assert expected_audience(doc({"regions": ["VN-01"]}, "Exercise"), rows).sure == {1}
    assert expected_audience(doc({"regions": ["VN-01"]}, "Draft"), rows).sure == set()


def test_haversine_and_ray_casting_on_known_values() -> None:
    # Hà Nội to Thành phố Hồ Chí Minh: about 1,140 km
    d = haversine_km(np.array([21.0285]), np.array([105.8542]), 10.8231, 106.6297)
    assert 1130 < float(d[0]) < 1150
    square = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)]
    lat, lon = np.array([0.5, 1.5, 0.5]), np.array([0.5, 0.5, -0.1])
    assert in_polygon(lat, lon, square).tolist() == [True, False, False]
    one_degree = math.pi * 6371.0088 / 180
    assert polygon_boundary_km(lat[:1], lon[:1], square)[0] == pytest.approx(one_degree / 2, 1e-3)


@settings(deadline=None)
@given(st.floats(8.5, 23.0), st.floats(102.5, 109.5), st.integers(5, 9))
def test_tolerance_covers_every_vertex_of_the_cell_around_a_point(
    lat: float, lon: float, res: int
) -> None:
    """A cell's centre is within the tolerance of any point of the cell: the band is wide
    enough for every way Loa's H3 resolution can differ from exact geometry."""
    cell = h3.latlng_to_cell(lat, lon, res)
    c_lat, c_lon = h3.cell_to_latlng(cell)
    vertices = h3.cell_to_boundary(cell)
    far = max(
        float(haversine_km(np.array([v[0]]), np.array([v[1]]), c_lat, c_lon)[0]) for v in vertices
    )
    assert far < tolerance_km(res)
    assert far > tolerance_km(res) / 2  # and not absurdly wide


def test_tolerance_at_resolution_7_is_about_one_cell_edge() -> None:
    assert 1.4 < tolerance_km(7) < 1.8


def test_problems_name_missing_and_extra_recipients_but_not_the_edge_band() -> None:
    e = Expected(frozenset({1, 2}), frozenset({3}))
    assert e.problems({1, 2}) == e.problems({1, 2, 3}) == []
    assert "missing" in e.problems({1})[0]
    assert "not targeted" in e.problems({1, 2, 4})[0]


# --- Loa against the oracle ------------------------------------------------------------------

codes = st.one_of(
    st.just("VN"),
    st.sampled_from(R.province_codes),
    st.sampled_from(R.ward_codes),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(codes, min_size=1, max_size=4), st.sampled_from(["Actual", "Exercise"]))
def test_region_code_audience_equals_the_string_prefix_oracle(
    index: DirectoryPartition, rows: Rows, chosen: list[str], status: str
) -> None:
    d = doc({"regions": chosen}, status)
    expected = expected_audience(d, rows)
    assert not expected.maybe
    assert loa_audience(d, index) == expected.sure


def test_every_ward_of_a_province_alert_is_the_province_s(
    index: DirectoryPartition, rows: Rows
) -> None:
    for code in (
        "VN-01",
        "VN-22",
        "VN-96",
        R.province_codes[-1],
        R.ward_codes[0],
        R.ward_codes[-1],
    ):
        d = doc({"regions": [code]})
        assert loa_audience(d, index) == expected_audience(d, rows).sure, code


lat_in = st.floats(HANOI[0], HANOI[2])
lon_in = st.floats(HANOI[1], HANOI[3])


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lat_in, lon_in, st.floats(0.0, 12.0))
def test_circle_audience_agrees_with_haversine_outside_the_edge_band(
    index: DirectoryPartition, rows: Rows, lat: float, lon: float, radius: float
) -> None:
    d = doc({"circle": [f"{lat},{lon} {radius}"]})
    assert expected_audience(d, rows).problems(loa_audience(d, index)) == []


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lat_in,
    lon_in,
    st.lists(st.tuples(st.floats(0.01, 0.12), st.floats(0.0, 6.28)), min_size=3, max_size=7),
)
def test_polygon_audience_agrees_with_ray_casting_outside_the_edge_band(
    index: DirectoryPartition,
    rows: Rows,
    lat: float,
    lon: float,
    spokes: list[tuple[float, float]],
) -> None:
    # a star-shaped simple polygon around (lat, lon): vertices sorted by angle
    ring = [
        (lat + r * math.sin(a), lon + r * math.cos(a))
        for r, a in sorted(spokes, key=lambda s: s[1])
    ]
    ring.append(ring[0])
    d = doc({"polygon": [" ".join(f"{y},{x}" for y, x in ring)]})
    try:
        actual = loa_audience(d, index)
    except SchemaViolation:  # all spokes on one line: no area (tests/unit/test_ingest_rules.py)
        assume(False)
    assert expected_audience(d, rows).problems(actual) == []


def test_a_mixed_alert_agrees_with_the_oracle(index: DirectoryPartition, rows: Rows) -> None:
    d = doc(
        {
            "regions": ["VN-48"],
            "geocode": [{"valueName": "VN-WARD", "value": R.ward_codes[7][-5:]}],
            "polygon": ["21.00,105.80 21.00,105.88 21.06,105.88 21.06,105.80 21.00,105.80"],
            "circle": ["10.78,106.70 3.5"],
        }
    )
    expected = expected_audience(d, rows)
    assert expected.problems(loa_audience(d, index)) == []
    assert len(expected.sure) > 500


# --- the oracle bites ------------------------------------------------------------------------


def shifted(regions: RegionRegistry) -> RegionRegistry:
    """The registry with an off-by-one ward index: a ward alert reaches the next ward."""
    index = {code: (i + 1) % regions.n_wards for code, i in regions._ward_index.items()}
    return replace(regions, _ward_index=index)


def test_oracle_catches_a_ward_alert_reaching_the_neighbouring_ward(
    index: DirectoryPartition, rows: Rows
) -> None:
    d = doc({"regions": [R.ward_codes[100], R.ward_codes[2000]]})
    expected = expected_audience(d, rows)
    assert expected.sure and expected.problems(loa_audience(d, index)) == []
    problems = expected.problems(loa_audience(d, index, shifted(R)))
    assert any("missing" in p for p in problems) and any("not targeted" in p for p in problems)


def test_oracle_catches_a_province_mapped_to_its_neighbour(
    index: DirectoryPartition, rows: Rows
) -> None:
    wrong = replace(R, ward_province=np.roll(R.ward_province, 1))
    d = doc({"regions": ["VN-22"]})
    assert expected_audience(d, rows).problems(loa_audience(d, index, wrong))


def test_oracle_catches_a_circle_one_ring_too_wide(
    index: DirectoryPartition, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = regions_module.circle_cells

    def wide(lat: float, lon: float, radius: float, res: int, *, pointer: str = "") -> list[str]:
        return list({n for c in right(lat, lon, radius, res) for n in h3.grid_disk(c, 2)})

    d = doc({"circle": ["21.03,105.85 4.5"]})
    monkeypatch.setattr(regions_module, "circle_cells", wide)
    assert any(
        "not targeted" in p for p in expected_audience(d, rows).problems(loa_audience(d, index))
    )


def test_oracle_catches_test_only_alert_reaching_everyone(
    index: DirectoryPartition, rows: Rows
) -> None:
    d = doc({"regions": ["VN-01"]}, "Exercise")
    targets = resolve_targets(d["info"], R)
    order = FanoutOrder("t/1", 1, TaskKind.ALERT, Priority.EXTREME, 0, targets.codes, False)
    got = set(select_audience(order, index, R).ids.tolist())
    assert expected_audience(d, rows).problems(got)
