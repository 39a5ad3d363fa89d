"""Deterministic synthetic subscribers, for the demo, tests and benchmarks.

``synthetic_subscribers(n, seed)`` always returns the same directory for the same arguments, so
a test can compute the exact expected audience of an alert without reading Kafka back.
Recipient ids are ``id_base + 1 .. id_base + n``; wards are uniform over all wards; channels,
languages and the test-audience flag follow fixed shares (below).
"""

from __future__ import annotations

import numpy as np

from streams.directory.index import FLAG_TEST, ChangeBatch
from streams.encoding import decimal_digits, digit_runs, fixed_records, lookup_table, rows
from streams.records import CHANNELS, LANGUAGES
from streams.regions import RegionRegistry

__all__ = ["encode_subscribers", "synthetic_subscribers"]

CHANNEL_SHARES = (0.70, 0.20, 0.10)  # oa, push, sms
LANGUAGE_SHARES = (0.93, 0.02, 0.02, 0.02, 0.005, 0.005)  # vi, en, km, hmn, zh, fr
TEST_AUDIENCE_SHARE = 0.001


def synthetic_subscribers(
    n: int, seed: int, regions: RegionRegistry, *, id_base: int = 0
) -> ChangeBatch:
    rng = np.random.default_rng(seed)
    return ChangeBatch(
        ids=np.arange(id_base + 1, id_base + n + 1, dtype=np.uint64),
        ward=rng.integers(0, regions.n_wards, size=n, dtype=np.uint16),
        channel=rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARES).astype(np.uint8),
        language=rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_SHARES).astype(np.uint8),
        flags=np.where(rng.random(n) < TEST_AUDIENCE_SHARE, FLAG_TEST, np.uint8(0)).astype(
            np.uint8
        ),
        deleted=np.zeros(n, dtype=np.bool_),
    )


def encode_subscribers(batch: ChangeBatch, regions: RegionRegistry) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` subscriber-change records (``schemas/subscriber_change.schema.json``).

    ``batch.ids`` must be sorted (synthetic batches are). Encoded vectorized, run by run.
    """
    wards = lookup_table([f'"{c}"'.encode() for c in regions.ward_codes])
    channels = lookup_table([f'"{c}"'.encode() for c in CHANNELS])
    languages = lookup_table([f'"{c}"'.encode() for c in LANGUAGES])
    test = lookup_table([b"false", b"true"])
    out: list[tuple[bytes, bytes]] = []
    for start, stop, width in digit_runs(batch.ids):
        part = slice(start, stop)
        digits = decimal_digits(batch.ids[part], width)
        matrix = fixed_records(
            stop - start,
            [
                b'{"recipient_id":',
                digits,
                b',"ward":',
                wards[batch.ward[part]],
                b',"channel":',
                channels[batch.channel[part]],
                b',"language":',
                languages[batch.language[part]],
                b',"test_audience":',
                test[(batch.flags[part] & FLAG_TEST).astype(np.intp)],
                b"}",
            ],
        )
        out.extend(zip(rows(digits), rows(matrix), strict=True))
    return out
