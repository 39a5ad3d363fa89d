from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.encoding import decimal_digits, digit_runs, fixed_records, lookup_table, rows


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=50))
def test_decimal_digits_match_python_formatting(values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint64)
    assert rows(decimal_digits(arr, 20)) == [b"%020d" % v for v in values]


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=0, max_size=80))
def test_digit_runs_cover_sorted_ids_with_exact_widths(values: list[int]) -> None:
    arr = np.array(sorted(values), dtype=np.uint64)
    covered = []
    for start, stop, width in digit_runs(arr):
        assert all(len(str(v)) == width for v in arr[start:stop].tolist())
        assert rows(decimal_digits(arr[start:stop], width)) == [
            str(v).encode() for v in arr[start:stop].tolist()
        ]
        covered.extend(range(start, stop))
    assert covered == list(range(len(values)))


def test_padded_enumerations_stay_valid_json() -> None:
    table = lookup_table([b'"oa"', b'"push"', b'"sms"'])
    codes = np.array([0, 1, 2, 1], dtype=np.uint8)
    matrix = fixed_records(4, [b'{"channel":', table[codes], b"}"])
    assert [orjson.loads(r)["channel"] for r in rows(matrix)] == ["oa", "push", "sms", "push"]
