"""The console's preview: who a draft would reach, counted from the directory census.

Where it sits: behind ``POST /api/drafts/{id}/preview``. Ingest's own decision (the same rules)
gives the targets of the alert a draft makes: region codes, the compacted H3 cells of its
shapes, test audience or not. This module counts them from the census every worker publishes
(:mod:`streams.directory.census`: subscribers by ward, first channel and test flag, located ones
by cell), never from the whole directory, so a national preview over 10M subscribers is a few
numpy reductions over ~3,300 wards and the distinct location cells: well under a second
(``benchmarks/console_preview.py``). The map's cells are the located audience coarsened to H3
resolution :data:`MAP_RESOLUTION` (a national alert: about 2,000 cells).

What the census cannot know, and the preview therefore does not model: category opt-outs,
frequency caps and who a lineage already reached (the ``by_kind`` split of an Update is
approximate; ``loa preview`` plans it exactly from the directory). ``eta_s`` is the time to emit
the audience at the channels' current cluster-wide limits (``loa channels``), None when no
channel the audience uses is limited.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from h3.api import basic_int as h3_int

from streams.directory.cells import CellSet, to_resolution
from streams.directory.census import Census
from streams.records import CHANNELS
from streams.regions import RegionRegistry

__all__ = ["MAP_RESOLUTION", "census_audience", "eta_s"]

#: H3 resolution of the preview map's cells (about 250 km² each).
MAP_RESOLUTION = 5


def census_audience(
    censuses: Mapping[int, Census],
    regions: RegionRegistry,
    *,
    targets: Sequence[str],
    cells: Sequence[str],
    test_only: bool,
    partitions: int,
) -> dict[str, Any]:
    """``directory``, ``reached``, ``by_province``, ``by_channel``, ``cells`` and
    ``partitions_counted`` of an alert's targets (as its fan-out orders carry them)."""
    mask = regions.ward_mask((f"/targets/{i}", code) for i, code in enumerate(targets))
    area = CellSet.of(int(c, 16) for c in cells) if cells else None
    tests = slice(1, 2) if test_only else slice(0, 2)
    n_wards, n_channels = mask.shape[0], len(CHANNELS)
    per_ward = np.zeros((n_wards, n_channels), dtype=np.int64)
    map_cells: list[npt.NDArray[np.uint64]] = []
    map_counts: list[npt.NDArray[np.float64]] = []
    directory = counted = 0
    for p in range(partitions):
        census = censuses.get(p)
        if census is None or census.n_wards != n_wards or census.channels != CHANNELS:
            continue
        counted += 1
        directory += census.subscribers
        per_ward += np.where(
            mask[:, None], census.ward_counts[:, :, tests].sum(axis=2, dtype=np.int64), 0
        )
        if census.cells.size:
            _located(census, mask, area, test_only, per_ward, map_cells, map_counts)
    by_province = np.bincount(
        regions.ward_province, weights=per_ward.sum(axis=1), minlength=len(regions.province_codes)
    )
    by_channel = per_ward.sum(axis=0)
    return {
        "directory": directory,
        "reached": int(by_channel.sum()),
        "by_province": {
            regions.province_codes[i]: round(float(n))
            for i, n in sorted(enumerate(by_province), key=lambda x: -x[1])
            if n > 0
        },
        "by_channel": {name: int(by_channel[i]) for i, name in enumerate(CHANNELS)},
        "cells": _map(map_cells, map_counts),
        "partitions_counted": counted,
        "partitions": partitions,
    }


def _located(
    census: Census,
    mask: npt.NDArray[np.bool_],
    area: CellSet | None,
    test_only: bool,
    per_ward: npt.NDArray[np.int64],
    map_cells: list[npt.NDArray[np.uint64]],
    map_counts: list[npt.NDArray[np.float64]],
) -> None:
    """Add the located rows in the audience: to ``per_ward`` those reached only through a
    shape (their ward is not targeted), to the map all of them (ward targeted or inside).

    Rows are summed per distinct cell first (``reduceat`` over the cells' runs), so only the
    distinct cells are coarsened and grouped: no sort over rows."""
    runs = census.runs.astype(np.int64)
    keep = mask[census.ward]
    only_shape = None
    if area is not None:
        inside_cell = area.contains(census.cells)  # one test per distinct cell
        if inside_cell.any():
            inside = np.repeat(inside_cell, runs)
            only_shape = inside & ~keep
            keep = keep | inside
    if test_only:
        tested = (census.kind & np.uint8(1)) != 0
        keep &= tested
        if only_shape is not None:
            only_shape &= tested
    if only_shape is not None and only_shape.any():
        channel = (census.kind[only_shape] >> np.uint8(1)).astype(np.int64)
        np.add.at(
            per_ward,
            (census.ward[only_shape].astype(np.int64), channel),
            census.count[only_shape].astype(np.int64),
        )
    weights = np.where(keep, census.count, 0).astype(np.float64)
    per_cell = np.add.reduceat(weights, np.cumsum(runs) - runs)
    used = per_cell > 0
    if used.any():
        map_cells.append(to_resolution(census.cells[used], MAP_RESOLUTION))
        map_counts.append(per_cell[used])


def _map(
    cells: list[npt.NDArray[np.uint64]], counts: list[npt.NDArray[np.float64]]
) -> list[dict[str, Any]]:
    if not cells:
        return []
    unique, where = np.unique(np.concatenate(cells), return_inverse=True)
    totals = np.bincount(where, weights=np.concatenate(counts))
    out = []
    for c, n in zip(unique.tolist(), totals.tolist(), strict=True):
        # the centre, so the page can shade cells without an H3 library of its own
        lat, lon = h3_int.cell_to_latlng(c)
        out.append({"h3": f"{c:x}", "n": int(n), "lat": round(lat, 3), "lon": round(lon, 3)})
    return out


def eta_s(by_channel: Mapping[str, int], limits: Mapping[str, float | None]) -> float | None:
    """Seconds to emit every task at the channels' cluster-wide limits (the slowest limited
    channel decides; channels run side by side); None when no used channel is limited, and
    infinity (as None too: "paused") when a used channel's limit is 0."""
    times = []
    for channel, n in by_channel.items():
        rate = limits.get(channel)
        if n <= 0 or rate is None:
            continue
        if rate <= 0:
            return None
        times.append(n / rate)
    return max(times) if times else None
