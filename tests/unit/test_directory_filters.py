"""Who a directory selection lets through: the location, test-audience and opt-out filters of
``DirectoryPartition.select`` / ``rows``, and the H3 cell arithmetic under them
(``streams.directory.cells``), at the edges the property tests rarely reach."""

from __future__ import annotations

import h3
import numpy as np

from streams.directory.cells import CellSet, is_cell, parse_cell, to_resolution
from streams.directory.index import FLAG_TEST, ChangeBatch, DirectoryPartition, category_mask
from streams.records import CATEGORIES

HANOI = h3.str_to_int(h3.latlng_to_cell(21.03, 105.85, 7))
HCMC = h3.str_to_int(h3.latlng_to_cell(10.78, 106.70, 7))


def _directory(
    cells: list[int], flags: list[int] | None = None, optout: list[int] | None = None
) -> DirectoryPartition:
    n = len(cells)
    d = DirectoryPartition()
    d.apply(
        ChangeBatch(
            ids=np.arange(n, dtype=np.uint64),
            ward=np.zeros(n, dtype=np.uint16),
            channel=np.zeros(n, dtype=np.uint8),
            language=np.zeros(n, dtype=np.uint8),
            flags=np.array(flags or [0] * n, dtype=np.uint8),
            deleted=np.zeros(n, dtype=np.bool_),
            cell=np.array(cells, dtype=np.uint64),
            optout=np.array(optout or [0] * n, dtype=np.uint16),
        )
    )
    d.compact()
    return d


def test_select_takes_the_rows_whose_location_is_inside_the_area() -> None:
    d = _directory([HANOI, HCMC, 0])
    nowhere = np.zeros(1, dtype=np.bool_)  # ward 0 is not targeted
    area = CellSet.of([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(HANOI), 5))])
    inside = area.contains(d.cell)
    assert inside.tolist() == [True, False, False]
    assert d.select(nowhere, test_only=False, cells=inside).ids.tolist() == [0]
    assert d.select(nowhere, test_only=False).ids.tolist() == []


def test_without_an_opt_out_mask_nobody_is_left_out() -> None:
    everything = (1 << len(CATEGORIES)) - 1
    d = _directory([0, 0, 0], optout=[everything, category_mask(["Geo"]), 0])
    everyone = np.ones(1, dtype=np.bool_)
    assert d.select(everyone, test_only=False).ids.tolist() == [0, 1, 2]
    assert d.rows(everyone, test_only=False).tolist() == [True, True, True]
    geo = category_mask(["Geo"])
    assert d.select(everyone, test_only=False, exclude_optout=geo).ids.tolist() == [2]


def test_test_only_keeps_the_test_audience_whatever_else_is_set() -> None:
    flags = [int(FLAG_TEST), 0, int(FLAG_TEST) | 2, 2]
    d = _directory([HANOI] * 4, flags=flags)
    everyone = np.ones(1, dtype=np.bool_)
    assert d.select(everyone, test_only=True).ids.tolist() == [0, 2]
    assert d.select(everyone, test_only=False).ids.tolist() == [0, 1, 2, 3]


def test_a_set_with_one_located_subscriber_finds_them() -> None:
    area = CellSet.of([HANOI])
    assert area.contains(np.array([HANOI], dtype=np.uint64)).tolist() == [True]
    assert area.contains(np.array([0, HANOI, 0], dtype=np.uint64)).tolist() == [False, True, False]
    assert area.contains(np.array([0], dtype=np.uint64)).tolist() == [False]
    assert len(area) == 1
    assert (
        len(CellSet.of([HANOI, HCMC, h3.str_to_int(h3.cell_to_parent(h3.int_to_str(HANOI), 3))]))
        == 3
    )
    assert len(CellSet.of([])) == 0


def test_no_cell_stays_no_cell_beside_resolution_0_cells() -> None:
    coarse = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(HANOI), 0))
    out = to_resolution(np.array([0, coarse, 0], dtype=np.uint64), 2)
    assert out[0] == 0 and out[2] == 0
    assert h3.int_to_str(int(out[1])) == h3.cell_to_center_child(h3.int_to_str(coarse), 2)


def _cell(base: int, digits: list[int]) -> int:
    """An H3 cell index built by hand (mode 1, resolution ``len(digits)``)."""
    res = len(digits)
    value = (1 << 59) | (res << 52) | (base << 45)
    for k in range(1, 16):
        digit = digits[k - 1] if k <= res else 7
        value |= digit << (3 * (15 - k))
    return value


def test_is_cell_agrees_with_h3_on_base_cells_and_deleted_pentagon_subtrees() -> None:
    pentagon, hexagon = 4, 2
    candidates = [
        _cell(121, [0]),
        _cell(122, [0]),  # one past the last base cell
        _cell(127, []),
        *(_cell(pentagon, d) for d in ([1], [0, 1], [0, 0, 1], [2, 1], [1, 2], [0, 3], [0, 1, 2])),
        *(_cell(hexagon, d) for d in ([1], [0, 1], [1, 1])),
    ]
    got = is_cell(np.array(candidates, dtype=np.uint64)).tolist()
    assert got == [h3.is_valid_cell(h3.int_to_str(c)) for c in candidates]
    assert got[1] is False
    assert got[3:10] == [False, False, False, True, False, True, False]


def test_covers_is_the_cell_or_an_ancestor_in_the_set_as_h3_says() -> None:
    """``CellSet.covers`` (an agency's jurisdiction cells) against h3's own parents: a cell is
    covered when it or an ancestor is a member; a coarser cell that merely overlaps is not."""
    hanoi = h3.latlng_to_cell(21.03, 105.85, 5)
    members = [hanoi, h3.latlng_to_cell(10.78, 106.70, 7)]
    area = CellSet.of(int(c, 16) for c in members)
    probes = [
        *h3.cell_to_children(hanoi, 7)[:5],  # inside, finer
        hanoi,  # the member itself
        h3.cell_to_parent(hanoi, 4),  # coarser: overlaps, not covered
        h3.latlng_to_cell(16.05, 108.20, 7),  # Da Nang: elsewhere
        h3.latlng_to_cell(10.78, 106.70, 9),  # inside the second member
    ]
    expected = [
        any(
            h3.get_resolution(p) >= h3.get_resolution(m)
            and h3.cell_to_parent(p, h3.get_resolution(m)) == m
            for m in members
        )
        for p in probes
    ]
    cells = np.array([int(p, 16) for p in probes], dtype=np.uint64)
    assert area.covers(cells).tolist() == expected == [True] * 6 + [False, False, True]
    assert not area.covers(np.array([0, 12345], dtype=np.uint64)).any()  # none, not a cell
    assert parse_cell(probes[0]) == int(probes[0], 16)
    assert parse_cell("zz") is None and parse_cell("12345") is None and parse_cell("-1") is None
