"""Vectorized JSON encoding for recipient-scale records.

A send task or a subscriber change is a template with a few per-recipient fields. Instead of
building one dict and calling ``orjson.dumps`` per recipient, the records of a chunk are laid
out as one ``(n, width)`` byte matrix: literal pieces are broadcast, per-recipient pieces are
filled column-wise from numpy arrays. Recipients are encoded in runs of ids with the same
number of digits (ids arrive sorted, so runs are contiguous) to keep every record exact, with
no padding in numbers or keys. Enumerated strings (channel, language) are padded after the
closing quote with JSON whitespace, which RFC 8259 §2 allows between any two tokens, so every
record is valid JSON that any parser reads unchanged.

The only per-record Python work left is the one ``bytes`` object the Kafka batch builder needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "Piece",
    "RecordLayout",
    "decimal_digits",
    "digit_runs",
    "fixed_records",
    "lookup_table",
    "rows",
]

U8 = npt.NDArray[np.uint8]
#: A literal (same bytes in every record) or a per-record ``(n, w)`` uint8 matrix.
Piece = bytes | U8

# Four ASCII digits packed in a little-endian uint32, for 0000..9999: one gather per 4 digits.
_QUADS = np.frombuffer(b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint32)
_TEN_THOUSAND = np.uint64(10_000)
_POWERS_OF_TEN = np.array([10**k for k in range(20)], dtype=np.uint64)


def decimal_digits(values: npt.NDArray[np.uint64], width: int) -> U8:
    """``(n, width)`` ASCII decimals, zero-padded on the left to ``width`` (<= 20) digits."""
    groups = (width + 3) // 4
    quads = np.empty((values.shape[0], groups), dtype=np.uint32)
    rest = values.astype(np.uint64, copy=True)
    for g in range(groups - 1, -1, -1):
        quads[:, g] = _QUADS[(rest % _TEN_THOUSAND).astype(np.intp)]
        rest //= _TEN_THOUSAND
    return quads.view(np.uint8)[:, groups * 4 - width :]


def digit_runs(sorted_ids: npt.NDArray[np.uint64]) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, digits)`` for each run of ids with the same decimal length."""
    n = int(sorted_ids.shape[0])
    if n == 0:
        return
    bounds = np.searchsorted(sorted_ids, _POWERS_OF_TEN[1:], side="left")
    start = 0
    for digits, stop in enumerate(bounds.tolist(), start=1):
        if stop > start:
            yield start, int(stop), digits
            start = int(stop)
    if start < n:
        yield start, n, 20


def lookup_table(tokens: Sequence[bytes]) -> U8:
    """Rows of equal width, one per code: each token left-aligned and padded with spaces.

    Index it with a code array (``table[codes]``) to get the per-record piece.
    """
    width = max(len(t) for t in tokens)
    table = np.full((len(tokens), width), 32, dtype=np.uint8)
    for i, token in enumerate(tokens):
        table[i, : len(token)] = np.frombuffer(token, dtype=np.uint8)
    return table


def fixed_records(n: int, pieces: Sequence[Piece]) -> U8:
    """Lay ``pieces`` side by side into an ``(n, width)`` matrix, one record per row."""
    layout = RecordLayout([p if isinstance(p, bytes) else int(p.shape[1]) for p in pieces])
    return layout.fill(n, [p for p in pieces if not isinstance(p, bytes)]).copy()


class RecordLayout:
    """A record template: literal pieces and fixed-width slots, filled chunk after chunk.

    The literal bytes are written once into a reusable matrix; each :meth:`fill` writes only the
    slots. The returned matrix is overwritten by the next fill: turn it into ``bytes`` first.
    """

    __slots__ = ("_matrix", "_template", "slots", "template", "width")

    def __init__(self, pieces: Sequence[bytes | int]) -> None:
        template = bytearray()
        slots: list[tuple[int, int]] = []
        for piece in pieces:
            if isinstance(piece, bytes):
                template += piece
            else:
                slots.append((len(template), len(template) + piece))
                template += b" " * piece
        #: A record with every slot blank, and the ``(start, stop)`` byte range of each slot.
        self.template = bytes(template)
        self.slots: tuple[tuple[int, int], ...] = tuple(slots)
        self._template = np.frombuffer(self.template, dtype=np.uint8)
        self.width = len(template)
        self._matrix = np.empty((0, self.width), dtype=np.uint8)

    def fill(self, n: int, values: Sequence[U8]) -> U8:
        if self._matrix.shape[0] < n:
            self._matrix = np.empty((n, self.width), dtype=np.uint8)
            self._matrix[:] = self._template
        out = self._matrix[:n]
        for (a, b), value in zip(self.slots, values, strict=True):
            out[:, a:b] = value
        return out


def rows(matrix: U8) -> list[bytes]:
    """One ``bytes`` per row; rows must not end in NUL (records end in ``}``, keys in a digit)."""
    n, width = matrix.shape
    if n == 0:
        return []
    packed = np.ascontiguousarray(matrix).view(f"S{width}").ravel()
    out: list[bytes] = packed.tolist()
    return out
