"""Vectorized H3 arithmetic for the directory's location column (pure numpy, no Kafka, no h3).

A subscriber's coarse location is one H3 cell (``uint64``, 0 = none) at the directory's
resolution (``LOA_H3_RESOLUTION``). An order's polygons and circles arrive as a *compacted* set
of H3 cells (mixed resolutions, see ``streams.regions``). Matching millions of subscribers
against such a set is done with bit operations on the H3 index layout (H3 v4, "H3Index"):

====== ==========================================================
bits   meaning
====== ==========================================================
63     reserved, 0
59-62  mode, 1 for a cell
56-58  reserved, 0 for a cell
52-55  resolution 0..15
45-51  base cell 0..121
0-44   15 digits of 3 bits, digit r at bits ``3*(15-r)``; 7 past the resolution
====== ==========================================================

so the parent of a cell is a mask, and its centre child is a mask too. Nothing here loops over
subscribers in Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CellSet",
    "cell_resolution",
    "format_hex",
    "is_cell",
    "parse_cell",
    "parse_hex",
    "to_resolution",
]

U64 = npt.NDArray[np.uint64]

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(15 << 52)
_MODE_SHIFT = np.uint64(59)
_BASE_SHIFT = np.uint64(45)
_HIGH_RESERVED = np.uint64((1 << 63) | (7 << 56))
_DIGITS = np.uint64((1 << 45) - 1)
_N_BASE_CELLS = 122
# base cells that are pentagons; their first non-zero digit can never be 1 (a deleted sub-tree)
_PENTAGON = np.zeros(_N_BASE_CELLS + 1, dtype=np.bool_)
_PENTAGON[[4, 14, 24, 38, 49, 58, 63, 72, 83, 97, 107, 117]] = True


def _unused_digits(res: int) -> np.uint64:
    """The digit bits past resolution ``res`` (all set in a valid cell of that resolution)."""
    return np.uint64((1 << (3 * (15 - res))) - 1)


def cell_resolution(cells: U64) -> npt.NDArray[np.uint8]:
    return ((cells & _RES_MASK) >> _RES_SHIFT).astype(np.uint8)


def is_cell(cells: U64) -> npt.NDArray[np.bool_]:
    """Validity of H3 cell indexes, as ``h3.is_valid_cell``: mode, reserved bits, base cell,
    digits (0..6 up to the resolution, 7 past it), and no deleted pentagon sub-sequence."""
    ok = ((cells >> _MODE_SHIFT) == np.uint64(1)) & ((cells & _HIGH_RESERVED) == 0)
    base = ((cells >> _BASE_SHIFT) & np.uint64(127)).astype(np.intp)
    ok &= base < _N_BASE_CELLS
    res = cell_resolution(cells)
    pentagon = _PENTAGON[np.minimum(base, _N_BASE_CELLS)]
    for r in np.unique(res[ok]).tolist():
        rows = np.flatnonzero(ok & (res == r))
        c = cells[rows]
        unused = _unused_digits(r)
        good = (c & unused) == unused
        first = np.zeros(rows.shape[0], dtype=np.uint64)  # first non-zero digit, 0 if none
        for k in range(1, r + 1):
            digit = (c >> np.uint64(3 * (15 - k))) & np.uint64(7)
            good &= digit != 7
            first = np.where(first == 0, digit, first)
        good &= ~(pentagon[rows] & (first == 1))
        ok[rows] = good
    result: npt.NDArray[np.bool_] = ok
    return result


def to_resolution(cells: U64, res: int) -> U64:
    """Each cell at resolution ``res``: its ancestor if finer, its centre child if coarser.

    The centre child shares its parent's centre point, so "the centre child of a coarse cell
    lies in a polygon's cell set" means "the coarse cell's centre lies in the polygon", the same
    rule H3 uses to fill a polygon. Cells must be valid; 0 (no cell) stays 0.
    """
    out = np.zeros_like(cells)
    have = cells != 0
    own = cell_resolution(cells)
    for r in np.unique(own[have]).tolist():
        rows = have & (own == r)
        c = cells[rows]
        # ancestor: the digits past ``res`` become 7; centre child: digits r+1..res become 0
        c = c | _unused_digits(res) if r >= res else c & ~(_unused_digits(r) & ~_unused_digits(res))
        out[rows] = (c & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT)
    return out


@dataclass(frozen=True, slots=True)
class CellSet:
    """A set of H3 cells of mixed resolutions (a compacted area), for vectorized containment."""

    #: ``(resolution, sorted cells of that resolution)``, finest last.
    levels: tuple[tuple[int, U64], ...]

    @classmethod
    def of(cls, cells: Iterable[int]) -> CellSet:
        arr = np.fromiter(cells, dtype=np.uint64)
        if arr.size and not is_cell(arr).all():
            raise ValueError("not an H3 cell index")
        res = cell_resolution(arr)
        levels = tuple((int(r), np.unique(arr[res == r])) for r in sorted(np.unique(res).tolist()))
        return cls(levels)

    @property
    def finest(self) -> int:
        return self.levels[-1][0] if self.levels else 0

    def __len__(self) -> int:
        return sum(int(c.shape[0]) for _, c in self.levels)

    def contains(self, cells: U64) -> npt.NDArray[np.bool_]:
        """Which ``cells`` (one resolution or mixed; 0 = none) lie inside the set.

        A cell lies inside when, brought to the set's finest resolution (ancestor or centre
        child), it or one of its ancestors is in the set.
        """
        hit = np.zeros(cells.shape[0], dtype=np.bool_)
        if not self.levels:
            return hit
        rows = np.flatnonzero(cells != 0)
        if rows.size == 0:
            return hit
        probe = to_resolution(cells[rows], self.finest)
        inside = np.zeros(rows.shape[0], dtype=np.bool_)
        for res, members in self.levels:
            ancestor = probe | _unused_digits(res)
            ancestor = (ancestor & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT)
            pos = np.searchsorted(members, ancestor)
            pos[pos == members.shape[0]] = 0
            inside |= members[pos] == ancestor
        hit[rows] = inside
        return hit

    def covers(self, cells: U64) -> npt.NDArray[np.bool_]:
        """Which ``cells`` lie wholly inside the set: the cell or one of its ancestors is a
        member. Stricter than :meth:`contains`: a cell coarser than the members it overlaps
        is not covered (an agency's jurisdiction, where part of a cell is not enough)."""
        hit = np.zeros(cells.shape[0], dtype=np.bool_)
        valid = (cells != 0) & is_cell(cells)
        own = cell_resolution(cells)
        for res, members in self.levels:
            rows = np.flatnonzero(valid & (own >= res))
            if rows.size == 0:
                continue
            ancestor = to_resolution(cells[rows], res)
            pos = np.searchsorted(members, ancestor)
            pos[pos == members.shape[0]] = 0
            hit[rows] |= members[pos] == ancestor
        return hit


def parse_cell(text: str) -> int | None:
    """An H3 cell index written in hex (``872830828ffffff``), or None if it is not a valid
    cell."""
    try:
        value = int(text, 16)
    except ValueError:
        return None
    if not 0 < value < 1 << 64:
        return None
    return value if bool(is_cell(np.array([value], dtype=np.uint64))[0]) else None


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# ASCII -> nibble value, 255 for anything that is not a lower- or upper-case hex digit
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_ch] = _i
for _i, _ch in enumerate(b"ABCDEF"):
    _HEX_VALUE[_ch] = 10 + _i


def parse_hex(matrix: npt.NDArray[np.uint8]) -> tuple[U64, npt.NDArray[np.bool_]]:
    """``(n, 15)`` ASCII hex digits to ``uint64`` values, and which rows were all hex digits."""
    nibbles = _HEX_VALUE[matrix]
    ok = (nibbles != 255).all(axis=1)
    out = np.zeros(matrix.shape[0], dtype=np.uint64)
    for col in range(matrix.shape[1]):
        out = (out << np.uint64(4)) | (nibbles[:, col] & np.uint8(15)).astype(np.uint64)
    return out, ok


def format_hex(cells: U64) -> npt.NDArray[np.uint8]:
    """``uint64`` cells to ``(n, 15)`` lower-case ASCII hex (H3's string form of a cell)."""
    out = np.empty((cells.shape[0], 15), dtype=np.uint8)
    rest = cells.copy()
    for col in range(14, -1, -1):
        out[:, col] = _HEX_DIGITS[(rest & np.uint64(15)).astype(np.intp)]
        rest >>= np.uint64(4)
    return out
