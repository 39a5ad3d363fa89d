from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import UnknownRegion
from streams.regions import (
    COUNTRY_BOUNDS,
    Targets,
    circle_cells,
    registry,
    resolve_targets,
    territory,
)


def test_registry_holds_the_current_official_divisions() -> None:
    r = registry()
    assert len(r.province_codes) == 34
    assert r.n_wards == 3321
    assert "VN-01" in r.province_codes
    assert all(
        code.startswith(r.province_codes[p])
        for code, p in zip(r.ward_codes, r.ward_province.tolist(), strict=True)
    )


def test_country_covers_every_ward_and_a_province_only_its_own() -> None:
    r = registry()
    assert r.ward_mask([("/0", "VN")]).all()
    hanoi = r.ward_mask([("/0", "VN-01")])
    assert hanoi.sum() == sum(1 for c in r.ward_codes if c.startswith("VN-01-"))


def test_unknown_code_names_its_field() -> None:
    with pytest.raises(UnknownRegion) as info:
        registry().ward_mask([("/a/0", "VN-01"), ("/a/1", "VN-01-99999")])
    assert info.value.pointer == "/a/1"


def test_province_and_ward_lookups_name_the_unknown_code() -> None:
    r = registry()
    assert r.province_codes[r.province_index("VN-79")] == "VN-79"
    with pytest.raises(UnknownRegion, match='province code "VN-99"'):
        r.province_index("VN-99")
    with pytest.raises(UnknownRegion, match='ward code "VN-01-99999"'):
        r.ward_index("VN-01-99999")


def test_a_mask_is_the_union_of_its_codes() -> None:
    r = registry()
    province = r.ward_province == r.province_index("VN-01")
    other = r.ward_province == r.province_index("VN-79")
    # a ward already inside its province, then the province, then another province
    mask = r.ward_mask([("/0", "VN-01-00004"), ("/1", "VN-01"), ("/2", "VN-79")])
    assert (mask == (province | other)).all()
    assert not r.ward_mask([]).any()


def test_unknown_code_is_quoted_in_the_message() -> None:
    with pytest.raises(UnknownRegion) as info:
        registry().ward_mask([("/a/0", "VN-01-99999")])
    assert '"VN-01-99999"' in info.value.message


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("VN", "VN", "VN"),
        ("VN", "VN-01", "VN-01"),
        ("LOA", "VN-01-00004", "VN-01-00004"),
        ("VN-PROVINCE", "01", "VN-01"),
        ("VN-WARD", "00004", "VN-01-00004"),
    ],
)
def test_a_geocode_maps_to_its_loa_code(name: str, value: str, code: str) -> None:
    assert registry().geocode(name, value, pointer="/g") == code


@pytest.mark.parametrize(
    ("name", "value", "field", "says"),
    [
        # a value name Loa does not map: the message lists the ones it does
        ("FIPS", "x", "valueName", ['"FIPS"', "VN, LOA, VN-PROVINCE, VN-WARD"]),
        ("VN-PROVINCE", "99", "value", ["VN-PROVINCE", '"99"']),
        ("VN-PROVINCE", 1, "value", ["VN-PROVINCE", "1"]),
        ("VN-WARD", "99999", "value", ["VN-WARD", '"99999"']),
        # a code of one kind under another kind's name is not that kind's code
        ("VN-WARD", "01", "value", ["VN-WARD", '"01"']),
        ("VN-PROVINCE", "00004", "value", ["VN-PROVINCE", '"00004"']),
        ("VN", "01", "value", ["VN", '"01"']),
        ("VN", "00004", "value", ["VN", '"00004"']),
        ("LOA", "VN-99", "value", ["LOA", '"VN-99"']),
    ],
)
def test_an_unmapped_geocode_is_rejected_at_its_field_and_named(
    name: str, value: object, field: str, says: list[str]
) -> None:
    with pytest.raises(UnknownRegion) as info:
        registry().geocode(name, value, pointer="/info/0/area/0/geocode/0")
    assert info.value.pointer == f"/info/0/area/0/geocode/0/{field}"
    for part in says:
        assert part in info.value.message


# --- shapes against the real border (streams/data/geo, docs/geography.md) ---------------------

CIRCLE_AT = "/info/0/area/0/circle/0"
POLYGON_AT = "/info/0/area/0/polygon/0"
DATASET = "@geo-maps/countries-maritime-10m 0.6.0"


def _resolve(res: int = 7, **area: object) -> Targets:
    return resolve_targets([{"area": [{"areaDesc": "x", **area}]}], registry(), h3_resolution=res)


def _square(lat: float, lon: float, half: float) -> str:
    """A CAP polygon: the square of side ``2 * half`` degrees around a point."""
    s, n, w, e = lat - half, lat + half, lon - half, lon + half
    return f"{s},{w} {s},{e} {n},{e} {n},{w} {s},{w}"


# capitals and cities just across the border, all inside the old box 7-23.5 N, 102-118 E
NEIGHBOURS = {
    "Phnom Penh": (11.556, 104.928),
    "Vientiane": (17.975, 102.633),
    "Haikou": (20.044, 110.199),
    "Nanning": (22.817, 108.366),
    # the Hoàng Sa islands: OpenStreetMap draws them under another country (documented)
    "Hoàng Sa": (16.5, 112.0),
}


@pytest.mark.parametrize("place", NEIGHBOURS)
def test_a_circle_or_polygon_in_a_neighbouring_city_is_unknown_region_naming_the_shape(
    place: str,
) -> None:
    lat, lon = NEIGHBOURS[place]
    for area, pointer, label in [
        ({"circle": [f"{lat},{lon} 10"]}, CIRCLE_AT, "circle 1 of area 1"),
        ({"polygon": [_square(lat, lon, 0.1)]}, POLYGON_AT, "polygon 1 of area 1"),
    ]:
        with pytest.raises(UnknownRegion) as info:
            _resolve(**area)
        assert info.value.pointer == pointer
        assert info.value.message.startswith(f"{label} lies wholly outside Viet Nam (land and")
        assert DATASET in info.value.message  # says which outline decided


def test_a_polygon_wholly_in_cambodia_is_unknown_region() -> None:
    # Prey Veng province, between Phnom Penh and the border
    with pytest.raises(UnknownRegion, match="polygon 1 of area 1 lies wholly outside"):
        _resolve(polygon=["11.3,105.0 11.3,105.3 11.5,105.3 11.5,105.0 11.3,105.0"])


@pytest.mark.parametrize(
    "area",
    [
        {"circle": ["21.03,105.85 5"]},  # Hà Nội
        {"polygon": [_square(21.03, 105.85, 0.05)]},
        {"circle": ["16.07,108.25 20"]},  # Đà Nẵng, half of it at sea within the territorial sea
        {"circle": ["20.55,107.25 3"]},  # the Gulf of Tonkin off Cô Tô, in the territorial sea
        {"circle": ["8.645,111.92 0"]},  # Trường Sa Lớn, one of the Trường Sa islands drawn
        {"circle": ["10.25,104.0 3"]},  # Phú Quốc island (the outline draws no sea west of it)
    ],
)
def test_a_shape_inside_the_land_or_territorial_sea_is_accepted_with_nothing_outside(
    area: dict[str, list[str]],
) -> None:
    targets = _resolve(**area)
    assert targets.cells and targets.outside == ()


@pytest.mark.parametrize(
    "circle",
    [
        "20.3,107.2 3",  # the Gulf of Tonkin between the coast and Bạch Long Vĩ's own sea
        "16.0,109.3 5",  # off Đà Nẵng past the territorial sea: the exclusive economic zone
        "10.2,103.85 2",  # west of Phú Quốc: the outline draws no sea there
    ],
)
def test_sea_beyond_the_drawn_territorial_sea_is_outside_as_documented(circle: str) -> None:
    with pytest.raises(UnknownRegion, match="circle 1 of area 1 lies wholly outside"):
        _resolve(circle=[circle])


def test_a_shape_partly_in_laos_is_accepted_and_names_the_part_outside() -> None:
    # around the Lao Bảo border crossing: about half of it lies in Laos, to the west
    targets = _resolve(circle=["16.62,106.59 15"])
    assert len(targets.outside) == 1
    pointer, message = targets.outside[0]
    assert pointer == CIRCLE_AT
    assert message.startswith("circle 1 of area 1: ")
    share = float(message.split(": ")[1].split(" %")[0])
    assert 30 < share < 70
    assert "of 123 H3 cells at resolution 7) lies outside Viet Nam" in message
    _, lon_part = message.split("within lat ")[1].split(", lon ")
    west = float(lon_part.split(" to ")[0])
    east = float(lon_part.split(" to ")[1].split(";")[0])
    assert west < 106.59 - 0.1 and east < 106.59 + 0.1  # the part west of the border
    assert "subscribers located there are alerted too" in message
    # the cells are not clipped: a subscriber just across the border is in the same danger
    whole = set(h3.uncompact_cells(list(targets.cells), 7))
    assert h3.latlng_to_cell(16.62, 106.45, 7) in whole


def test_a_coastal_circle_reaching_past_the_territorial_sea_names_the_part_at_sea() -> None:
    targets = _resolve(circle=["13.77,109.23 60"])  # Quy Nhơn
    (pointer, message), *rest = targets.outside
    assert pointer == CIRCLE_AT and rest == []
    east = float(message.split(", lon ")[1].split(" to ")[1].split(";")[0])
    assert east > 109.23 + 0.4  # out to sea, east of the city


def test_one_shape_wholly_outside_rejects_the_alert_at_that_shape() -> None:
    infos = [
        {"area": [{"areaDesc": "a", "circle": ["21.03,105.85 5"]}]},
        {
            "area": [
                {"areaDesc": "b"},
                {"areaDesc": "c", "circle": ["21.03,105.85 5", "11.55,104.92 5"]},
            ]
        },
    ]
    with pytest.raises(UnknownRegion) as info:
        resolve_targets(infos, registry())
    assert info.value.pointer == "/info/1/area/1/circle/1"
    assert info.value.message.startswith("circle 2 of area 2 of info 2 lies wholly outside")


def test_a_coarse_resolution_still_counts_a_cell_that_touches_the_country() -> None:
    # at resolution 4 the islet's cell is far larger than the islet, and its centre is at sea
    assert _resolve(4, circle=["8.645,111.92 0"]).outside == ()
    assert _resolve(4, circle=["21.03,105.85 5"]).outside == ()


def test_the_territory_is_inside_the_box_that_skips_shapes() -> None:
    # the box may only skip what the outline would reject: every territory cell lies within it
    land = territory()
    s, w, n, e = COUNTRY_BOUNDS
    cells = [h3.int_to_str(int(c)) for _, level in land.cells.levels for c in level]
    points = [p for c in cells for p in h3.cell_to_boundary(c)]
    assert all(s <= lat <= n and w <= lon <= e for lat, lon in points)
    assert land.resolution == 7 and land.name == "Viet Nam" and DATASET in land.source


@cache
def _territory_cells() -> set[int]:
    """The territory at resolution 7 as a plain set, from the file with h3 alone (an oracle)."""
    doc = json.loads((files("streams") / "data" / "geo" / "vn-territory.json").read_text())
    return {h3.str_to_int(c) for c in h3.uncompact_cells(doc["cells"], 7)}


@settings(max_examples=150, deadline=None)
@given(
    st.floats(8.0, 23.5),
    st.floats(102.0, 110.0),
    st.floats(0.0, 40.0),
    st.sampled_from([7, 8]),
)
def test_a_circle_is_accepted_exactly_when_a_cell_of_it_overlaps_the_territory(
    lat: float, lon: float, radius: float, res: int
) -> None:
    cells = {h3.str_to_int(c) for c in circle_cells(lat, lon, radius, res)}
    land = _territory_cells()
    inside = {c for c in cells if h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), 7)) in land}
    try:
        targets = _resolve(res, circle=[f"{lat},{lon} {radius}"])
    except UnknownRegion:
        assert not inside
        return
    assert inside
    if len(inside) == len(cells):
        assert targets.outside == ()
    else:
        message = targets.outside[0][1]
        assert f"({len(cells) - len(inside)} of {len(cells)} H3 cells" in message
