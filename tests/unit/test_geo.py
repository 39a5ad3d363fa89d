"""H3 arithmetic, area resolution (geocodes, polygons, circles) and cell-based selection."""

from __future__ import annotations

from dataclasses import replace

import h3
import numpy as np
import pytest
from h3.api import basic_int as h3i
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.demo.oracle import ward_matches
from streams.directory.cells import CellSet, format_hex, is_cell, parse_hex, to_resolution
from streams.directory.index import DirectoryPartition
from streams.directory.synthetic import location_pool, synthetic_subscribers
from streams.errors import SchemaViolation, UnknownRegion, Unsupported
from streams.fanout.plan import select_audience
from streams.records import FanoutOrder, Priority, TaskKind
from streams.regions import circle_cells, polygon_cells, registry, resolve_targets

HANOI_POLYGON = "21.00,105.80 21.00,105.88 21.06,105.88 21.06,105.80 21.00,105.80"
HANOI_CIRCLE = "21.03,105.85 4.5"

points = st.tuples(st.floats(-85, 85), st.floats(-179, 179), st.integers(0, 15))


@settings(max_examples=300)
@given(points, st.integers(0, 15))
def test_vectorized_parent_and_centre_child_match_h3(p: tuple[float, float, int], res: int) -> None:
    cell = h3i.latlng_to_cell(*p)
    got = int(to_resolution(np.array([cell], dtype=np.uint64), res)[0])
    if res <= p[2]:
        assert got == h3i.cell_to_parent(cell, res)
    else:
        assert got == h3i.cell_to_center_child(cell, res)


@settings(max_examples=300)
@given(points, st.lists(st.integers(0, 63), max_size=2))
def test_is_cell_agrees_with_h3(p: tuple[float, float, int], flips: list[int]) -> None:
    cell = h3i.latlng_to_cell(*p)
    for bit in flips:
        cell ^= 1 << bit
    assert bool(is_cell(np.array([cell], dtype=np.uint64))[0]) == h3i.is_valid_cell(cell)


def test_deleted_pentagon_subcells_are_not_cells() -> None:
    pentagon = h3i.get_pentagons(3)[0]
    children = np.array(h3i.cell_to_children(pentagon, 5), dtype=np.uint64)
    assert is_cell(children).all()
    fake = (int(pentagon) & ~(7 << 3 * 11) & ~(15 << 52)) | (1 << 3 * 11) | (4 << 52)
    assert not h3i.is_valid_cell(fake)
    assert not is_cell(np.array([fake], dtype=np.uint64))[0]


def test_hex_round_trip() -> None:
    cells = location_pool(7)
    text = format_hex(cells)
    assert [bytes(r).decode() for r in text[:3]] == [h3.int_to_str(int(c)) for c in cells[:3]]
    back, ok = parse_hex(text)
    assert ok.all() and np.array_equal(back, cells)


def test_cell_set_contains_a_cell_when_it_or_an_ancestor_is_in_the_set() -> None:
    pool = location_pool(7)
    box = [(20.95, 105.75), (20.95, 105.95), (21.12, 105.95), (21.12, 105.75)]
    cells = h3.polygon_to_cells(h3.LatLngPoly(box), 7)
    compact = h3.compact_cells(cells)
    assert len(compact) < len(cells)
    area = CellSet.of(h3.str_to_int(c) for c in compact)
    inside = {h3.str_to_int(c) for c in cells}
    probe = np.concatenate([pool, np.zeros(3, dtype=np.uint64)])
    assert area.contains(probe).tolist() == [int(c) in inside for c in probe.tolist()]
    # a directory at a finer resolution: a fine cell is inside if its ancestor is
    fine = np.array([h3i.cell_to_center_child(int(c), 9) for c in pool], dtype=np.uint64)
    assert np.array_equal(area.contains(fine), area.contains(pool))


def test_polygon_takes_cells_whose_centre_is_inside_and_circle_those_within_radius() -> None:
    ring = [tuple(map(float, p.split(","))) for p in HANOI_POLYGON.split()]
    assert set(polygon_cells(ring, 7)) == set(h3.polygon_to_cells(h3.LatLngPoly(ring[:-1]), 7))
    got = set(circle_cells(21.03, 105.85, 4.5, 7))
    disk = h3.grid_disk(h3.latlng_to_cell(21.03, 105.85, 7), 10)
    near = {
        c for c in disk if h3.great_circle_distance((21.03, 105.85), h3.cell_to_latlng(c)) <= 4.5
    }
    assert got == near | {h3.latlng_to_cell(21.03, 105.85, 7)}
    # a polygon smaller than a cell still targets the cell it lies in
    tiny = [(21.03, 105.85), (21.03, 105.851), (21.031, 105.851), (21.03, 105.85)]
    assert polygon_cells(tiny, 7) == [h3.latlng_to_cell(21.0303, 105.8507, 7)]


def _infos(**area: object) -> list[dict[str, object]]:
    return [{"category": ["Met", "Safety"], "area": [{"areaDesc": "x", **area}]}]


def test_geocodes_map_to_loa_codes() -> None:
    r = registry()
    hanoi_ward = next(c for c in r.ward_codes if c.startswith("VN-01-"))
    pairs = [
        {"valueName": "LOA", "value": "VN-79"},
        {"valueName": "VN-PROVINCE", "value": "48"},
        {"valueName": "VN-WARD", "value": hanoi_ward[-5:]},
    ]
    targets = resolve_targets(_infos(geocode=pairs, regions=["VN-79"]), r)
    assert targets.codes == ("VN-79", "VN-48", hanoi_ward)
    assert targets.cells == ()
    assert targets.categories == ("Met", "Safety")


@pytest.mark.parametrize(
    ("pair", "pointer"),
    [
        ({"valueName": "SAME", "value": "006113"}, "/info/0/area/0/geocode/0/valueName"),
        ({"valueName": "VN-PROVINCE", "value": "99"}, "/info/0/area/0/geocode/0/value"),
        ({"valueName": "VN-WARD", "value": "99999"}, "/info/0/area/0/geocode/0/value"),
        ({"valueName": "LOA", "value": "VN-01-99999"}, "/info/0/area/0/geocode/0/value"),
    ],
)
def test_unknown_geocodes_are_rejected_at_their_field(pair: dict[str, str], pointer: str) -> None:
    with pytest.raises(UnknownRegion) as info:
        resolve_targets(_infos(geocode=[pair]), registry())
    assert info.value.pointer == pointer


def test_polygons_and_circles_resolve_to_compacted_cells() -> None:
    targets = resolve_targets(_infos(polygon=[HANOI_POLYGON], circle=[HANOI_CIRCLE]), registry())
    assert targets.codes == ()
    expanded = set(h3.uncompact_cells(list(targets.cells), 7))
    ring = [tuple(map(float, p.split(","))) for p in HANOI_POLYGON.split()]
    assert expanded == set(polygon_cells(ring, 7)) | set(circle_cells(21.03, 105.85, 4.5, 7))


@pytest.mark.parametrize(
    ("area", "error", "pointer"),
    [
        ({"polygon": ["21,105 21,106 22,106"]}, SchemaViolation, "/info/0/area/0/polygon/0"),
        ({"polygon": ["21,105 21,106 22,106 21,107"]}, SchemaViolation, "/info/0/area/0/polygon/0"),
        ({"polygon": ["a,b c,d e,f a,b"]}, SchemaViolation, "/info/0/area/0/polygon/0"),
        ({"polygon": ["48,2 48,3 49,3 48,2"]}, UnknownRegion, "/info/0/area/0/polygon/0"),
        ({"circle": ["21.03,105.85"]}, SchemaViolation, "/info/0/area/0/circle/0"),
        ({"circle": ["21.03,105.85 -1"]}, SchemaViolation, "/info/0/area/0/circle/0"),
        ({"circle": ["48.8,2.3 5"]}, UnknownRegion, "/info/0/area/0/circle/0"),
        ({"circle": ["16,107 3000"]}, Unsupported, "/info/0/area/0/circle/0"),
    ],
)
def test_bad_shapes_are_rejected_at_their_field(
    area: dict[str, list[str]], error: type[Exception], pointer: str
) -> None:
    with pytest.raises(error) as info:
        resolve_targets(_infos(**area), registry())
    assert info.value.pointer == pointer  # type: ignore[attr-defined]


def _order(**fields: object) -> FanoutOrder:
    values: dict[str, object] = {
        "alert_id": "a/1",
        "version": 1,
        "kind": TaskKind.ALERT,
        "priority": Priority.SEVERE,
        "partition": 0,
        "targets": (),
        "test_only": False,
    }
    values.update(fields)
    return FanoutOrder(**values)  # type: ignore[arg-type]


def test_audience_is_wards_or_cells_inside_minus_opt_outs_unless_extreme() -> None:
    r = registry()
    subs = synthetic_subscribers(30_000, 8, r, optout_share=0.2)
    index = DirectoryPartition()
    index.apply(subs)
    targets = resolve_targets(_infos(polygon=[HANOI_POLYGON], regions=["VN-48"]), r)
    inside = {h3.str_to_int(c) for c in h3.uncompact_cells(list(targets.cells), 7)}
    in_area = np.isin(subs.cell, np.array(sorted(inside), dtype=np.uint64))
    in_ward = ward_matches(np.asarray(r.ward_codes)[subs.ward], "VN-48")  # independent oracle
    met_safety = 0b110
    opted = (subs.optout & met_safety) == met_safety
    order = _order(targets=targets.codes, cells=targets.cells, categories=targets.categories)
    got = select_audience(order, index, r)
    assert set(got.ids.tolist()) == set(subs.ids[(in_area | in_ward) & ~opted].tolist())
    assert in_area.sum() > 100 and (opted & (in_area | in_ward)).sum() > 0
    extreme = select_audience(replace(order, priority=Priority.EXTREME), index, r)
    assert set(extreme.ids.tolist()) == set(subs.ids[in_area | in_ward].tolist())


def test_every_code_and_geocode_is_pointed_at_its_field_for_authorization() -> None:
    infos = [
        {"category": ["Met"], "area": [{"areaDesc": "x", "regions": ["VN-79", "VN-01"]}]},
        {
            "category": ["Fire", "Met"],
            "area": [
                {"areaDesc": "y", "regions": ["VN-79"]},
                {"areaDesc": "z", "geocode": [{"valueName": "VN-PROVINCE", "value": "48"}]},
            ],
        },
    ]
    targets = resolve_targets(infos, registry())
    assert targets.codes == ("VN-79", "VN-01", "VN-48")  # first seen, no repeats
    assert targets.categories == ("Met", "Fire")
    assert targets.pointed == (
        ("/info/0/area/0/regions/0", "VN-79"),
        ("/info/0/area/0/regions/1", "VN-01"),
        ("/info/1/area/0/regions/0", "VN-79"),
        ("/info/1/area/1/geocode/0", "VN-48"),
    )


POLYGON_AT = "/info/0/area/0/polygon/0"
CIRCLE_AT = "/info/0/area/0/circle/0"


@pytest.mark.parametrize(
    ("area", "error", "pointer", "says"),
    [
        ({"polygon": ["21,105 21,106 22,106"]}, SchemaViolation, POLYGON_AT, "at least 4 points"),
        (
            {"polygon": ["21,105 21,106 22,106 21,107"]},
            SchemaViolation,
            POLYGON_AT,
            "ends where it starts",
        ),
        (
            {"polygon": ["21,105 21,106 21,107 21,105"]},
            SchemaViolation,
            POLYGON_AT,
            "encloses an area (its points are not all on one line)",
        ),
        (
            {"polygon": ["48,2 48,3 49,3 48,2"]},
            UnknownRegion,
            POLYGON_AT,
            "polygon 1 of area 1 lies",
        ),
        ({"polygon": ["21,105 x 22,106 21,105"]}, SchemaViolation, POLYGON_AT, '"x" is not'),
        ({"circle": ["21.03,105.85"]}, SchemaViolation, CIRCLE_AT, '"21.03,105.85" is not'),
        ({"circle": ["21.03;105.85 5"]}, SchemaViolation, CIRCLE_AT, '"21.03;105.85" is not'),
        ({"circle": ["21.03,105.85 far"]}, SchemaViolation, CIRCLE_AT, 'radius "far" is not'),
        ({"circle": ["21.03,105.85 -1"]}, SchemaViolation, CIRCLE_AT, 'radius "-1" is not'),
        ({"circle": ["21.03,105.85 inf"]}, SchemaViolation, CIRCLE_AT, "not a distance in km"),
        ({"circle": ["48.8,2.3 5"]}, UnknownRegion, CIRCLE_AT, "circle 1 of area 1 lies"),
        ({"circle": ["95,105 5"]}, SchemaViolation, CIRCLE_AT, 'point "95,105" is out of range'),
        (
            {"polygon": ["-80,103 80,103 80,108 21,108 -80,108 -80,103"]},
            Unsupported,
            POLYGON_AT,
            "target large areas with region codes",
        ),
        ({"circle": ["16,107 3000"]}, Unsupported, CIRCLE_AT, "at resolution 7"),
    ],
)
def test_a_bad_shape_is_rejected_at_its_field_with_what_is_wrong(
    area: dict[str, list[str]], error: type[Exception], pointer: str, says: str
) -> None:
    with pytest.raises(error) as info:
        resolve_targets(_infos(**area), registry())
    assert info.value.pointer == pointer  # type: ignore[attr-defined]
    message = info.value.message  # type: ignore[attr-defined]
    assert says in message
    if isinstance(info.value, SchemaViolation) and "polygon" in area and '"' not in says:
        assert "CAP polygon" in message  # names the standard the shape breaks


@pytest.mark.parametrize(
    ("centre", "inside"),
    [
        # WGS 84's own limits are points; past them is not
        ("90,105", True),
        ("-90,105", True),
        ("15,180", True),
        ("15,-180", True),
        ("90.5,105", False),
        ("-90.5,105", False),
        ("15,180.5", False),
        ("15,-180.5", False),
        ("nan,105", False),
        ("15,inf", False),
        ("15,200", False),
        ("95,105", False),
    ],
)
def test_a_point_is_in_range_up_to_the_poles_and_the_antimeridian(
    centre: str, inside: bool
) -> None:
    # no such place is in the country: a point in range is unknown_region, one out of it schema
    error = UnknownRegion if inside else SchemaViolation
    with pytest.raises(error) as info:
        resolve_targets(_infos(circle=[f"{centre} 1"]), registry())
    assert info.value.pointer == CIRCLE_AT
    if not inside:
        assert f'point "{centre}" is out of range' in info.value.message


def test_the_box_only_skips_circles_that_cannot_reach_the_country() -> None:
    # The box used to decide (a circle centred on its edge, at sea off Borneo, was "inside");
    # now it only skips filling circles that cannot reach it, and the outline decides.
    from streams.regions import COUNTRY_BOUNDS

    s, w, n, e = COUNTRY_BOUNDS
    mid_lat, mid_lon = (s + n) / 2, (w + e) / 2
    for lat, lon in [(s, mid_lon), (mid_lat, e)]:  # on the box's edge, far out at sea
        with pytest.raises(UnknownRegion, match="circle 1 of area 1 lies wholly outside"):
            resolve_targets(_infos(circle=[f"{lat},{lon} 1"]), registry())
    # centred south of the box, reaching Côn Đảo's territorial sea: not skipped, and inside
    targets = resolve_targets(_infos(circle=["6.9,106.6 200"]), registry())
    assert targets.cells and targets.outside[0][0] == CIRCLE_AT
    for lat, lon in [(mid_lat, w - 50), (s - 1, mid_lon)]:  # in the country's latitudes only
        with pytest.raises(UnknownRegion):
            resolve_targets(_infos(circle=[f"{lat},{lon} 1"]), registry())


def test_a_size_error_outside_an_alert_names_no_field() -> None:
    with pytest.raises(Unsupported) as info:
        circle_cells(16.0, 107.0, 3000.0, 7)
    assert info.value.pointer == ""
    with pytest.raises(Unsupported) as info:
        polygon_cells([(-80.0, 103.0), (80.0, 103.0), (80.0, 108.0), (-80.0, 108.0)], 7)
    assert info.value.pointer == ""


def test_a_polygon_needing_over_the_cell_limit_is_refused_before_it_is_filled() -> None:
    # about 1.35 million cells at resolution 7 (7 million km²), over MAX_AREA_CELLS
    ring = [(-80.0, 103.0), (80.0, 103.0), (80.0, 108.0), (-80.0, 108.0), (-80.0, 103.0)]
    with pytest.raises(Unsupported, match="target large areas with region codes"):
        polygon_cells(ring, 7, pointer="/p")


@pytest.mark.parametrize(
    ("ring", "res"),
    [
        # 2° x 2° in the north: about 62,000 cells at resolution 8
        ([(21.0, 104.0), (21.0, 106.0), (23.0, 106.0), (23.0, 104.0), (21.0, 104.0)], 8),
        # a 300 km circle's worth of polygon at resolution 7: about 55,000 cells
        ([(13.0, 104.0), (13.0, 109.0), (18.0, 109.0), (18.0, 104.0), (13.0, 104.0)], 7),
    ],
)
def test_a_large_polygon_under_the_cell_limit_is_filled(
    ring: list[tuple[float, float]], res: int
) -> None:
    cells = polygon_cells(ring, res, pointer="/p")
    assert set(cells) == set(h3.polygon_to_cells(h3.LatLngPoly(ring[:-1]), res))


def _circle_oracle(lat: float, lon: float, radius_km: float, res: int) -> set[str]:
    """Cells whose centre is within the radius, found by filling a box around the circle."""
    dlat = radius_km / 110.0 + 0.05
    dlon = radius_km / (110.0 * np.cos(np.radians(lat))) + 0.05
    box = [(lat - dlat, lon - dlon), (lat - dlat, lon + dlon), (lat + dlat, lon + dlon)]
    box.append((lat + dlat, lon - dlon))
    inside = {
        c
        for c in h3.polygon_to_cells(h3.LatLngPoly(box), res)
        if h3.great_circle_distance((lat, lon), h3.cell_to_latlng(c)) <= radius_km
    }
    return inside | {h3.latlng_to_cell(lat, lon, res)}


@pytest.mark.parametrize(
    ("lat", "lon", "radius_km", "res"),
    [
        (21.03, 105.85, 30.0, 7),
        (16.0, 107.5, 300.0, 7),
        (10.78, 106.70, 2.0, 10),
        (10.78, 106.70, 12.0, 9),
        (22.8, 104.9, 0.0, 7),
    ],
)
def test_a_circle_takes_every_cell_whose_centre_is_within_its_radius(
    lat: float, lon: float, radius_km: float, res: int
) -> None:
    assert set(circle_cells(lat, lon, radius_km, res)) == _circle_oracle(lat, lon, radius_km, res)


def test_a_cell_whose_centre_is_exactly_on_the_circle_is_inside() -> None:
    centre = h3.latlng_to_cell(21.03, 105.85, 7)
    lat, lon = h3.cell_to_latlng(centre)
    neighbour = next(c for c in h3.grid_ring(centre, 1))
    radius = h3.great_circle_distance((lat, lon), h3.cell_to_latlng(neighbour), "km")
    assert neighbour in circle_cells(lat, lon, radius, 7)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Limits of two cells, so that single-cell circles (radius 0) reach them exactly."""
    import streams.regions as regions_module

    monkeypatch.setattr(regions_module, "MAX_AREA_CELLS", 2)
    monkeypatch.setattr(regions_module, "MAX_COMPACT_CELLS", 2)


# three points in three far-apart cells: a circle of radius 0 is the cell of its centre
SPOT_CENTRES = [(21.03, 105.85), (16.05, 108.2), (10.78, 106.7)]
SPOTS = [f"{lat},{lon} 0" for lat, lon in SPOT_CENTRES]


@pytest.mark.usefixtures("small_limits")
def test_shapes_may_cover_up_to_the_cell_limit_and_the_one_past_it_is_refused() -> None:
    assert len(resolve_targets(_infos(circle=SPOTS[:2]), registry()).cells) == 2
    with pytest.raises(Unsupported) as info:
        resolve_targets(_infos(circle=SPOTS), registry())
    assert info.value.pointer == "/info/0/area/0/circle/2"  # the shape that crossed the limit
    assert "over 2 H3 cells" in info.value.message
    assert "target large areas with region codes" in info.value.message
    # polygons each smaller than a cell (one cell each), counted the same way
    tiny = [f"{a},{b} {a},{b + 0.001} {a + 0.001},{b + 0.001} {a},{b}" for a, b in SPOT_CENTRES]
    assert len(resolve_targets(_infos(polygon=tiny[:2]), registry()).cells) == 2
    with pytest.raises(Unsupported) as info:
        resolve_targets(_infos(polygon=tiny), registry())
    assert info.value.pointer == "/info/0/area/0/polygon/2"


def test_compacted_cells_may_reach_the_limit_and_one_past_it_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streams.regions as regions_module

    monkeypatch.setattr(regions_module, "MAX_COMPACT_CELLS", 2)
    assert len(resolve_targets(_infos(circle=SPOTS[:2]), registry()).cells) == 2
    with pytest.raises(Unsupported) as info:
        resolve_targets(_infos(circle=SPOTS), registry())
    assert info.value.pointer == "/info"
    assert "compact to 3 H3 cells, the limit is 2" in info.value.message


@pytest.mark.parametrize(
    ("polygon", "res", "inside"),
    [
        # a strip from the Mekong to the South China Sea across central Viet Nam, every vertex
        # outside the country's box
        ("15,100 16,100 16,120 15,120 15,100", 7, (15.5, 108.0)),
        # the same strip drawn from the east, and one across the north from west to south-east
        ("16,120 15,120 15,100 16,100 16,120", 7, (15.5, 105.0)),
        ("22,100 23,100 8,120 7,120 22,100", 7, (14.8, 110.0)),
        # rings around the whole country (resolution 4 keeps them small), drawn both ways, with
        # slanted sides, a vertex level with the box's corner and a side along the box's side
        ("6,101 25,101 25,119 6,119 6,101", 4, (21.03, 105.85)),
        ("6,101 25,101.9 25,119 7,120 6,119 6,101", 4, (21.03, 105.85)),
        ("6,101 6,119 7,120 25,119 25,101.9 6,101", 4, (21.03, 105.85)),
        ("6,102 25,102 25,119 6,119 6,102", 4, (21.03, 105.85)),
    ],
)
def test_a_polygon_across_or_around_the_country_with_no_vertex_in_it_is_resolved(
    polygon: str, res: int, inside: tuple[float, float]
) -> None:
    targets = resolve_targets(_infos(polygon=[polygon]), registry(), h3_resolution=res)
    cells = set(h3.uncompact_cells(list(targets.cells), res))
    assert h3.latlng_to_cell(*inside, res) in cells


@pytest.mark.parametrize(
    "polygon",
    [
        "13,98 15,98 15,101.5 13,101.5 13,98",  # over Thailand, west of the box
        "24,100 25,100 25,120 24,120 24,100",  # north of the box, as wide as the country
        "0,100 6,100 6,120 0,120 0,100",  # south of it
        "10,119 11,119 11,125 10,125 10,119",  # east of it
        # a ring around the box's corner region that turns back before reaching it
        "6,100 6,101.5 22,101.5 22,101 6.5,101 6.5,100 6,100",
        # slivers just outside the box, along and across the line of its west side
        "10,101.99 11,101.995 11,101.9 10,101.9 10,101.99",
        "5,101.9995 5,102.0005 4.99,102 5,101.9995",
        # a side on the line of the box's south side, or aimed at its corner
        "7,100 7,120 6,110 7,100",
        "5,100 6,101 6,100 5,100",
    ],
)
def test_a_polygon_near_the_country_but_not_over_it_is_unknown_region(polygon: str) -> None:
    with pytest.raises(
        UnknownRegion, match="polygon 1 of area 1 lies wholly outside Viet Nam"
    ) as info:
        resolve_targets(_infos(polygon=[polygon]), registry())
    assert info.value.pointer == POLYGON_AT


def _brute_force_circle(lat: float, lon: float, radius_km: float, res: int) -> set[str]:
    """Every cell whose centre lies within the radius, found without grid distances: all cells
    whose centre lies in a box that holds the circle (degrees of latitude are at least 110.5 km,
    of longitude at least that times the cosine of the box's far latitude), then the distance of
    each; plus the centre's own cell, which a circle always covers."""
    dlat = radius_km / 110.5 + 1e-9
    dlon = dlat / np.cos(np.radians(abs(lat) + dlat))
    box = [(lat - dlat, lon - dlon), (lat - dlat, lon + dlon), (lat + dlat, lon + dlon)]
    box.append((lat + dlat, lon - dlon))
    near = {
        c
        for c in h3.polygon_to_cells(h3.LatLngPoly(box), res)
        if h3.great_circle_distance((lat, lon), h3.cell_to_latlng(c), "km") <= radius_km
    }
    return near | {h3.latlng_to_cell(lat, lon, res)}


@settings(max_examples=600, deadline=None)
@given(
    st.floats(8.5, 23.0),
    st.floats(102.5, 109.5),
    st.floats(0.0, 3.0),
    st.integers(5, 10),
)
def test_a_small_circle_anywhere_in_the_country_takes_exactly_the_cells_within_its_radius(
    lat: float, lon: float, spacings: float, res: int
) -> None:
    # radius 0 to 3 cell spacings (centre to neighbouring centre), the centre anywhere in its
    # cell: where losing one neighbouring cell shows (a fault that did survived the tests
    # before, on about 2 % of random circles), the brute force sees it
    radius = spacings * h3.average_hexagon_edge_length(res, "km") * np.sqrt(3)
    got = circle_cells(lat, lon, radius, res)
    assert len(got) == len(set(got))
    assert set(got) == _brute_force_circle(lat, lon, radius, res)


@pytest.mark.parametrize("res", [6, 7, 8])
def test_a_circle_through_the_centres_of_a_ring_of_neighbours_takes_them_all(res: int) -> None:
    # radius = the distance to each neighbour of the cell, from that cell's own centre: the
    # circle passes exactly through (or just inside) neighbours' centres; none may be lost
    centre = h3.latlng_to_cell(16.05, 108.2, res)
    lat, lon = h3.cell_to_latlng(centre)
    for k in (1, 2, 3):
        for cell in h3.grid_ring(centre, k):
            radius = h3.great_circle_distance((lat, lon), h3.cell_to_latlng(cell), "km")
            got = set(circle_cells(lat, lon, radius, res))
            assert cell in got
            assert got == _brute_force_circle(lat, lon, radius, res)
