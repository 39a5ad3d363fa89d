"""Deterministic synthetic subscribers, for the demo, tests and benchmarks.

``synthetic_subscribers(n, seed)`` always returns the same directory for the same arguments, so
a test can compute the exact expected audience of an alert without reading Kafka back.
Recipient ids are ``id_base + 1 .. id_base + n``; wards are uniform over all wards; channels,
languages and the test-audience flag follow fixed shares (below). Most subscribers also have a
location cell, drawn from the H3 cells around Hà Nội, Đà Nẵng and Thành phố Hồ Chí Minh (not
tied to the home ward: people are not always at home). Opt-outs are off unless asked for, so
an alert's audience stays "everyone in the targeted wards".
"""

from __future__ import annotations

from functools import cache

import h3
import numpy as np
import numpy.typing as npt

from streams.directory.index import FLAG_TEST, NO_CHANNEL, ChangeBatch
from streams.directory.wire import DEFAULT_H3_RESOLUTION, encode_subscribers
from streams.records import CATEGORIES, CHANNELS, LANGUAGES
from streams.regions import RegionRegistry

__all__ = ["CITY_BOXES", "encode_subscribers", "location_pool", "synthetic_subscribers"]

CHANNEL_SHARES = (0.70, 0.20, 0.10)  # oa, push, sms
LANGUAGE_SHARES = (0.93, 0.02, 0.02, 0.02, 0.005, 0.005)  # vi, en, km, hmn, zh, fr
TEST_AUDIENCE_SHARE = 0.001
SECOND_CHANNEL_SHARE = 0.5
THIRD_CHANNEL_SHARE = 0.2
LOCATED_SHARE = 0.8

#: ``(south, west, north, east)`` boxes whose H3 cells make up the synthetic locations.
CITY_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (20.90, 105.70, 21.15, 105.95),  # Hà Nội
    (15.95, 108.10, 16.15, 108.30),  # Đà Nẵng
    (10.65, 106.55, 10.90, 106.80),  # Thành phố Hồ Chí Minh
)


@cache
def location_pool(h3_resolution: int = DEFAULT_H3_RESOLUTION) -> npt.NDArray[np.uint64]:
    """Sorted H3 cells (at ``h3_resolution``) covering :data:`CITY_BOXES`."""
    cells: set[int] = set()
    for s, w, n, e in CITY_BOXES:
        box = h3.LatLngPoly([(s, w), (s, e), (n, e), (n, w)])
        cells.update(h3.str_to_int(c) for c in h3.h3shape_to_cells(box, h3_resolution))
    return np.array(sorted(cells), dtype=np.uint64)


def synthetic_subscribers(
    n: int,
    seed: int,
    regions: RegionRegistry,
    *,
    id_base: int = 0,
    optout_share: float = 0.0,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
) -> ChangeBatch:
    rng = np.random.default_rng(seed)
    # the first draws are those of the original generator: wards and channels stay the same
    ward = rng.integers(0, regions.n_wards, size=n, dtype=np.uint16)
    channel = rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARES).astype(np.uint8)
    language = rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_SHARES).astype(np.uint8)
    flags = np.where(rng.random(n) < TEST_AUDIENCE_SHARE, FLAG_TEST, np.uint8(0)).astype(np.uint8)
    # further preferences: the next channels after the first, in a fixed cyclic order
    k = len(CHANNELS)
    more = rng.random(n)
    channel2 = np.where(more < SECOND_CHANNEL_SHARE, (channel + 1) % k, NO_CHANNEL)
    channel3 = np.where(more < THIRD_CHANNEL_SHARE, (channel + 2) % k, NO_CHANNEL)
    pool = location_pool(h3_resolution)
    cell = np.where(
        rng.random(n) < LOCATED_SHARE,
        pool[rng.integers(0, pool.shape[0], size=n)],
        np.uint64(0),
    )
    optout = np.where(
        rng.random(n) < optout_share,
        rng.integers(1, 1 << len(CATEGORIES), size=n, dtype=np.uint16),
        np.uint16(0),
    ).astype(np.uint16)
    return ChangeBatch(
        ids=np.arange(id_base + 1, id_base + n + 1, dtype=np.uint64),
        ward=ward,
        channel=channel,
        language=language,
        flags=flags,
        deleted=np.zeros(n, dtype=np.bool_),
        cell=cell.astype(np.uint64),
        channel2=channel2.astype(np.uint8),
        channel3=channel3.astype(np.uint8),
        optout=optout,
    )
