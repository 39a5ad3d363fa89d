"""The wire format of ``loa.directory.changes``: columnar batches to records and back.

Records follow ``schemas/subscriber_change.schema.json``. Loa's own writers (``loa directory
load``, the synthetic generator) encode vectorized with a fixed layout per id width: every
enumerated field is padded with JSON whitespace to a fixed width (RFC 8259 allows it between
tokens), so records of one id width have one length and the same bytes outside their fields.

Decoding (restore after a start or rebalance) reads such records with a vectorized *fast
path*: rows that are byte-for-byte an instance of the layout are decoded column-wise. Every
other row — another writer's JSON, opted-out categories, anything odd — goes through the
*general path* (``orjson`` per record, strict checks). The fast path accepts only rows whose
meaning is unambiguous and equal to what the general path reads (property-tested), so nothing
is ever misread; a bad record is reported and skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import h3
import numpy as np
import numpy.typing as npt
import orjson
from numpy.lib.stride_tricks import sliding_window_view

from streams.directory.cells import cell_resolution, format_hex, is_cell, parse_hex, to_resolution
from streams.directory.index import COLUMNS, FLAG_TEST, NO_CHANNEL, ChangeBatch, category_mask
from streams.encoding import decimal_digits, digit_runs, fixed_records, lookup_table, rows
from streams.errors import LoaError
from streams.kafkaio.recordbatch import FetchedRecords
from streams.records import CATEGORIES, CHANNELS, LANGUAGES
from streams.regions import RegionRegistry

__all__ = [
    "DEFAULT_H3_RESOLUTION",
    "Columns",
    "apply_doc",
    "decode_changes",
    "decode_fetched",
    "encode_matrices",
    "encode_subscribers",
]

#: The directory's H3 resolution when none is given (``LOA_H3_RESOLUTION``'s default).
DEFAULT_H3_RESOLUTION = 7

_U64_MAX = 2**64 - 1
_CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
_LANGUAGE_INDEX = {c: i for i, c in enumerate(LANGUAGES)}
_CATEGORY_SET = frozenset(CATEGORIES)
_HEX = frozenset("0123456789abcdefABCDEF")
_FIELDS = frozenset(
    {"recipient_id", "ward", "channels", "language", "test_audience", "cell", "opted_out"}
)

Record = tuple[bytes | None, bytes | None]
U8 = npt.NDArray[np.uint8]


# ---------------------------------------------------------------------------------- layout


def _preferences() -> list[tuple[int, int, int]]:
    """Every ordered choice of 1..3 distinct channels, as ``(first, second, third)``."""
    n = len(CHANNELS)
    out = []
    for a in range(n):
        out.append((a, int(NO_CHANNEL), int(NO_CHANNEL)))
        for b in range(n):
            if b == a:
                continue
            out.append((a, b, int(NO_CHANNEL)))
            out.extend((a, b, c) for c in range(n) if c not in (a, b))
    return out


def _pref_code(c1: Any, c2: Any, c3: Any) -> Any:
    """Dense code of a preference triple (vectorized); NO_CHANNEL counts as ``len(CHANNELS)``."""
    k = len(CHANNELS) + 1
    return (
        np.minimum(c1, k - 1).astype(np.intp) * k * k
        + np.minimum(c2, k - 1).astype(np.intp) * k
        + np.minimum(c3, k - 1).astype(np.intp)
    )


class _Layout:
    """The fixed-width tokens of Loa's record layout (built once per region registry)."""

    def __init__(self, regions: RegionRegistry) -> None:
        k = len(CHANNELS) + 1
        prefs = _preferences()
        tokens = [orjson.dumps([CHANNELS[c] for c in p if c != NO_CHANNEL]) for p in prefs]
        self.channels = lookup_table(tokens)
        self.by_pref = np.zeros(k**3, dtype=np.intp)  # pref code -> row of ``channels``
        for row, p in enumerate(prefs):
            self.by_pref[_pref_code(*p)] = row
        self.pref = np.array(prefs, dtype=np.uint8)  # row of ``channels`` -> triple
        self.wards = lookup_table([c.encode() for c in regions.ward_codes])
        self.languages = lookup_table([orjson.dumps(c) for c in LANGUAGES])
        self.test = lookup_table([b"false", b"true"])
        self.null_cell = lookup_table([b"null", b'"' + b"0" * 15 + b'"'])[0]
        # official ward code -> ward index (-1: none), to read "VN-PP-WWWWW" column-wise
        self.ward_by_official = np.full(100_000, -1, dtype=np.int32)
        for i, code in enumerate(regions.ward_codes):
            self.ward_by_official[int(code[-5:])] = i
        self.ward_province_code = np.array(
            [int(code[3:5]) for code in regions.ward_codes], dtype=np.int32
        )

    def pieces(self, width: int) -> list[bytes | int]:
        """The layout for ids of ``width`` digits: literals and slot widths."""
        return [
            b'{"recipient_id":',
            width,
            b',"ward":"VN-',
            2,
            b"-",
            5,
            b'","channels":',
            self.channels.shape[1],
            b',"language":',
            self.languages.shape[1],
            b',"test_audience":',
            self.test.shape[1],
            b',"cell":',
            self.null_cell.shape[0],
            b',"opted_out":[]}',
        ]


_LAYOUTS: dict[int, tuple[RegionRegistry, _Layout]] = {}


def _layout(regions: RegionRegistry) -> _Layout:
    # the registry holds numpy arrays (unhashable): cache by identity, keeping it alive
    hit = _LAYOUTS.get(id(regions))
    if hit is None or hit[0] is not regions:
        hit = _LAYOUTS[id(regions)] = (regions, _Layout(regions))
    return hit[1]


# ---------------------------------------------------------------------------------- encode


def _cell_tokens(cells: npt.NDArray[np.uint64], null: npt.NDArray[np.uint8]) -> Any:
    out = np.empty((cells.shape[0], null.shape[0]), dtype=np.uint8)
    out[:] = null
    have = cells != 0
    if have.any():
        out[have, 0] = ord('"')
        out[have, 1:16] = format_hex(cells[have])
        out[have, 16] = ord('"')
    return out


def encode_matrices(
    batch: ChangeBatch, regions: RegionRegistry
) -> tuple[list[tuple[U8, U8]], list[tuple[bytes, bytes | None]]]:
    """``batch`` as change records without a Python object per fixed-layout record.

    Returns ``(fixed, other)``: ``fixed`` is one ``(keys, values)`` pair of byte matrices per
    run of ids with the same number of digits (row ``i`` of both is one record); ``other`` holds
    the records that are not in the fixed layout (subscribers with opt-outs, and tombstones)
    as ``(key, value)``. ``batch.ids`` must be sorted and unique.
    """
    layout = _layout(regions)
    fixed: list[tuple[U8, U8]] = []
    plain = ~batch.deleted & (batch.optout == 0)
    fast = batch.take(plain)
    for start, stop, width in digit_runs(fast.ids):
        part = fast.take(slice(start, stop))
        digits = decimal_digits(part.ids, width)
        pref = layout.by_pref[_pref_code(part.channel, part.channel2, part.channel3)]
        codes = layout.wards[part.ward]
        matrix = fixed_records(
            stop - start,
            [
                b'{"recipient_id":',
                digits,
                b',"ward":"VN-',
                np.ascontiguousarray(codes[:, 3:5]),
                b"-",
                np.ascontiguousarray(codes[:, 6:11]),
                b'","channels":',
                layout.channels[pref],
                b',"language":',
                layout.languages[part.language],
                b',"test_audience":',
                layout.test[(part.flags & FLAG_TEST).astype(np.intp)],
                b',"cell":',
                _cell_tokens(part.cell, layout.null_cell),
                b',"opted_out":[]}',
            ],
        )
        fixed.append((np.ascontiguousarray(digits), matrix))
    other: list[tuple[bytes, bytes | None]] = []
    for i in np.flatnonzero(~plain).tolist():
        rid = int(batch.ids[i])
        key = b"%d" % rid
        if batch.deleted[i]:
            other.append((key, None))
        else:
            other.append((key, orjson.dumps(_as_dict(batch, i, regions))))
    return fixed, other


def encode_subscribers(
    batch: ChangeBatch, regions: RegionRegistry
) -> list[tuple[bytes, bytes | None]]:
    """``(key, value)`` change records for ``batch``; ``deleted`` rows become tombstones.

    ``batch.ids`` must be sorted and unique (``ChangeBatch.last_per_id`` makes them so).
    Subscribers without opt-outs are encoded vectorized in Loa's fixed layout; the few with
    opt-outs, and tombstones, one by one.
    """
    fixed, other = encode_matrices(batch, regions)
    out: list[tuple[bytes, bytes | None]] = []
    for keys, values in fixed:
        out.extend(zip(rows(keys), rows(values), strict=True))
    out.extend(other)
    return out


def _as_dict(batch: ChangeBatch, i: int, regions: RegionRegistry) -> dict[str, Any]:
    channels = [int(batch.channel[i]), int(batch.channel2[i]), int(batch.channel3[i])]
    optout = int(batch.optout[i])
    cell = int(batch.cell[i])
    return {
        "recipient_id": int(batch.ids[i]),
        "ward": regions.ward_codes[int(batch.ward[i])],
        "channels": [CHANNELS[c] for c in channels if c != NO_CHANNEL],
        "language": LANGUAGES[int(batch.language[i])],
        "test_audience": bool(batch.flags[i] & FLAG_TEST),
        "cell": f"{cell:015x}" if cell else None,
        "opted_out": [c for b, c in enumerate(CATEGORIES) if optout >> b & 1],
    }


# ---------------------------------------------------------------------------------- decode


class Columns:
    """Decoded rows by position in the input, filled by both paths."""

    def __init__(self, n: int) -> None:
        self.ok = np.zeros(n, dtype=np.bool_)
        self.ids = np.zeros(n, dtype=np.uint64)
        self.deleted = np.zeros(n, dtype=np.bool_)
        self.cols = {name: np.zeros(n, dtype=dtype) for name, dtype in COLUMNS.items()}

    def batch(self) -> ChangeBatch:
        ok = self.ok
        return ChangeBatch(
            ids=self.ids[ok],
            deleted=self.deleted[ok],
            **{name: col[ok] for name, col in self.cols.items()},
        )


def decode_changes(
    records: Iterable[Record],
    regions: RegionRegistry,
    *,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
    fast: bool = True,
) -> tuple[ChangeBatch, list[str]]:
    """Decode ``(key, value)`` change records; returns the batch and one error per bad record.

    A ``None`` value is a tombstone for the recipient in the key. Location cells are brought to
    ``h3_resolution``. A bad record is reported and skipped: it never stops the partition.
    ``fast=False`` forces the general path (for tests that compare the two).
    """
    recs = records if isinstance(records, list) else list(records)
    return decode_fetched(
        FetchedRecords.from_pairs(recs), regions, h3_resolution=h3_resolution, fast=fast
    )


def decode_fetched(
    records: FetchedRecords,
    regions: RegionRegistry,
    *,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
    fast: bool = True,
) -> tuple[ChangeBatch, list[str]]:
    """:func:`decode_changes` for records laid out in one buffer (a fetched partition): the
    fast path gathers fixed-layout values straight into a matrix, no object per record."""
    n = len(records)
    out = Columns(n)
    pending = np.ones(n, dtype=np.bool_)
    if fast and n:
        _fast_path(records, regions, h3_resolution, out, pending)
    errors: list[str] = []
    for i in np.flatnonzero(pending).tolist():
        try:
            _general(i, records.key(i), records.value(i), regions, h3_resolution, out)
        except (ValueError, KeyError, TypeError, LoaError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return out.batch(), errors


def _canonical_id(key: bytes | None) -> int:
    if not key or not key.isdigit() or (len(key) > 1 and key[:1] == b"0"):
        raise ValueError(f"key {key!r} is not a recipient id in canonical decimal")
    rid = int(key)
    if rid > _U64_MAX:
        raise ValueError("recipient id out of range")
    return rid


def _general(
    i: int,
    key: bytes | None,
    value: bytes | None,
    regions: RegionRegistry,
    h3_resolution: int,
    out: Columns,
) -> None:
    if value is None:
        out.ids[i] = _canonical_id(key)
        out.deleted[i] = True
        out.ok[i] = True
        return
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise TypeError(f"a change is a JSON object, got {type(doc).__name__}")
    apply_doc(i, key, doc, regions, h3_resolution, out)


def apply_doc(
    i: int,
    key: bytes | None,
    doc: dict[str, Any],
    regions: RegionRegistry,
    h3_resolution: int,
    out: Columns,
) -> None:
    """Check one subscriber document (``schemas/subscriber_change.schema.json``) and store it
    in row ``i``; raises ``ValueError``/``KeyError``/``TypeError`` saying what is wrong."""
    unknown = doc.keys() - _FIELDS
    if unknown:
        raise KeyError(f"unknown fields {sorted(unknown)}")
    rid = doc["recipient_id"]
    if type(rid) is not int or not 0 <= rid <= _U64_MAX:
        raise ValueError(f"recipient_id {rid!r} is not an unsigned 64-bit integer")
    if _canonical_id(key) != rid:
        raise ValueError(f"key {key!r} is not recipient_id {rid}")
    ward = regions.ward_index(doc["ward"])
    channels = doc["channels"]
    if type(channels) is not list or not 1 <= len(channels) <= 3:
        raise ValueError(f"channels {channels!r} is not a list of 1 to 3 channels")
    prefs = [_CHANNEL_INDEX[c] for c in channels]
    if len(set(prefs)) != len(prefs):
        raise ValueError(f"channels {channels!r} repeats a channel")
    prefs += [int(NO_CHANNEL)] * (3 - len(prefs))
    language = _LANGUAGE_INDEX[doc["language"]]
    test = doc.get("test_audience", False)
    if type(test) is not bool:
        raise TypeError(f"test_audience {test!r} is not a boolean")
    cell = _cell(doc.get("cell"), h3_resolution)
    opted = doc.get("opted_out", [])
    if type(opted) is not list or not all(type(c) is str for c in opted):
        raise TypeError(f"opted_out {opted!r} is not a list of CAP categories")
    optout = category_mask(opted)
    out.ids[i] = rid
    cols = out.cols
    cols["ward"][i] = ward
    cols["cell"][i] = cell
    cols["channel"][i], cols["channel2"][i], cols["channel3"][i] = prefs
    cols["language"][i] = language
    cols["flags"][i] = FLAG_TEST if test else 0
    cols["optout"][i] = optout
    out.ok[i] = True


def _cell(raw: object, h3_resolution: int) -> int:
    if raw is None:
        return 0
    if type(raw) is not str or len(raw) != 15 or not _HEX.issuperset(raw):
        raise ValueError(f"cell {raw!r} is not an H3 cell")
    if not h3.is_valid_cell(raw):
        raise ValueError(f"cell {raw!r} is not an H3 cell")
    res = h3.get_resolution(raw)
    if res < h3_resolution:
        raise ValueError(f"cell {raw!r} is coarser than the directory's resolution {h3_resolution}")
    cell: str = h3.cell_to_parent(raw, h3_resolution) if res > h3_resolution else raw
    return int(cell, 16)


def _lookup(
    matrix: npt.NDArray[np.uint8], table: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Row of ``table`` equal to each row of ``matrix`` (same width), and which rows matched."""
    width = table.shape[1]
    keys = np.ascontiguousarray(table).view(f"V{width}").ravel()
    probe = np.ascontiguousarray(matrix).view(f"V{width}").ravel()
    order = np.argsort(keys.view(f"S{width}"), kind="stable")
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys.view(f"S{width}"), probe.view(f"S{width}"))
    pos = np.minimum(pos, len(sorted_keys) - 1)
    # compare raw bytes (void), not S strings: S comparison ignores trailing NULs
    ok = sorted_keys[pos] == probe
    return order[pos], ok


_DIGIT_WEIGHTS = [np.uint64(10**k) for k in range(20)]


def _fast_path(
    recs: FetchedRecords,
    regions: RegionRegistry,
    h3_resolution: int,
    out: Columns,
    pending: npt.NDArray[np.bool_],
) -> None:
    layout = _layout(regions)
    base = sum(p if isinstance(p, int) else len(p) for p in layout.pieces(0))
    key_len, value_len = recs.key_len, recs.value_len
    # 20-digit ids may overflow uint64: general path
    candidate = (value_len == key_len + base) & (key_len >= 1) & (key_len <= 19)
    widths = np.unique(key_len[candidate]).tolist()
    for width in widths:
        group = np.flatnonzero(candidate & (key_len == width))
        # rows gathered from a strided window view: one memcpy per record, all in C
        values = sliding_window_view(recs.buffer, base + width)[recs.value_at[group]]
        keys = sliding_window_view(recs.buffer, width)[recs.key_at[group]]
        _fast_group(group, keys, values, width, layout, h3_resolution, out, pending)


@cache
def _template(layout: _Layout, width: int) -> tuple[U8, U8, list[tuple[int, int]]]:
    """The literal bytes of the layout for ``width``, their mask, and the slots."""
    template = bytearray()
    literal = bytearray()
    slots: list[tuple[int, int]] = []
    for piece in layout.pieces(width):
        if isinstance(piece, bytes):
            template += piece
            literal += b"\xff" * len(piece)
        else:
            slots.append((len(template), len(template) + piece))
            template += b" " * piece
            literal += b"\x00" * piece
    return (
        np.frombuffer(bytes(template), dtype=np.uint8),
        np.frombuffer(bytes(literal), dtype=np.uint8),
        slots,
    )


def _fast_group(
    group: npt.NDArray[np.intp],
    keys: U8,
    m: U8,
    width: int,
    layout: _Layout,
    h3_resolution: int,
    out: Columns,
    pending: npt.NDArray[np.bool_],
) -> None:
    """Decode the rows of ``group`` that match ``layout``'s template, column-wise; the others
    stay ``pending`` for the general parser. Why this long: one pass of vectorized steps over
    the same byte matrix (match, then each field's slice into its column); split, each step
    would re-slice the matrix of a million rows."""
    tmpl, literal, slots = _template(layout, width)
    # literal bytes equal the template's: xor, mask, and test whole rows at once
    diff = np.bitwise_xor(m, tmpl)
    diff &= literal
    ok = ~diff.any(axis=1)

    (d0, d1), (p0, p1), (w0, w1), (c0, c1), (l0, l1), (t0, t1), (x0, x1) = slots
    digits = m[:, d0:d1]
    ok &= ((digits >= ord("0")) & (digits <= ord("9"))).all(axis=1)
    if width > 1:
        ok &= digits[:, 0] != ord("0")
    ids = np.zeros(group.size, dtype=np.uint64)
    for k in range(width):
        ids += (digits[:, width - 1 - k] - ord("0")).astype(np.uint64) * _DIGIT_WEIGHTS[k]
    ok &= (keys == digits).all(axis=1)

    prov = m[:, p0:p1].astype(np.int32) - ord("0")
    wdig = m[:, w0:w1].astype(np.int32) - ord("0")
    ok &= ((prov >= 0) & (prov <= 9)).all(axis=1) & ((wdig >= 0) & (wdig <= 9)).all(axis=1)
    official = np.where(ok, wdig @ np.array([10_000, 1_000, 100, 10, 1], dtype=np.int32), 0)
    ward = layout.ward_by_official[official]
    ok &= ward >= 0
    province = prov @ np.array([10, 1], dtype=np.int32)
    ok &= layout.ward_province_code[np.maximum(ward, 0)] == province

    pref_row, good = _lookup(m[:, c0:c1], layout.channels)
    ok &= good
    language, good = _lookup(m[:, l0:l1], layout.languages)
    ok &= good
    test, good = _lookup(m[:, t0:t1], layout.test)
    ok &= good

    cell_tok = m[:, x0:x1]
    null = (cell_tok == layout.null_cell).all(axis=1)
    quoted = (cell_tok[:, 0] == ord('"')) & (cell_tok[:, 16] == ord('"'))
    hexes = cell_tok[:, 1:16]
    # lower-case only: the writer's form (anything else takes the general path)
    lower = ((hexes >= ord("0")) & (hexes <= ord("9"))) | (
        (hexes >= ord("a")) & (hexes <= ord("f"))
    )
    cells, _ = parse_hex(hexes)
    cells[~quoted] = 0
    valid = quoted & lower.all(axis=1)
    valid[valid] = is_cell(cells[valid])
    valid[valid] = cell_resolution(cells[valid]) >= h3_resolution
    ok &= null | valid
    cells[~valid] = 0

    rows_ok = group[ok]
    if rows_ok.size == 0:
        return
    pref = layout.pref[pref_row[ok]]
    out.ids[rows_ok] = ids[ok]
    cols = out.cols
    cols["ward"][rows_ok] = ward[ok]
    cols["cell"][rows_ok] = to_resolution(cells[ok], h3_resolution)
    cols["channel"][rows_ok] = pref[:, 0]
    cols["channel2"][rows_ok] = pref[:, 1]
    cols["channel3"][rows_ok] = pref[:, 2]
    cols["language"][rows_ok] = language[ok]
    cols["flags"][rows_ok] = np.where(test[ok] == 1, FLAG_TEST, np.uint8(0))
    cols["optout"][rows_ok] = 0
    out.ok[rows_ok] = True
    pending[rows_ok] = False
