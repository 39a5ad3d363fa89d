from __future__ import annotations

import pytest

from streams.errors import UnknownRegion
from streams.regions import registry


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
