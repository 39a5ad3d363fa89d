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
