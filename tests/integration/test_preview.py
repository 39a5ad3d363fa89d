"""``loa preview`` on the real broker: the audience an alert would reach, nothing sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from streams.agency.preview import Preview, preview
from streams.ingest import Rejected
from streams.kafkaio.clients import read_to_end
from tests.integration.conftest import LiveLoa, alert, run_loa

pytestmark = pytest.mark.integration


async def test_preview_counts_the_audience_by_province_and_channel_and_sends_nothing(
    live: LiveLoa, tmp_path: Path
) -> None:
    regions = ["VN-22", "VN-31"]
    raw = orjson.dumps(alert("PREVIEW-1", regions, expires="2020-01-01T00:00:00+07:00"))
    before = [r async for r in read_to_end(live.settings, live.settings.inbound_topic)]
    result = await preview(live.settings, raw, live.regions)
    assert isinstance(result, Preview)
    expected = live.expected(regions)
    assert result.reached == len(expected)
    assert result.directory == len(live.directory)
    assert sum(result.by_province.values()) == len(expected)
    assert set(result.by_province) == {"Quảng Ninh", "Thành phố Hải Phòng"}
    hit = np.isin(live.directory.ids, np.array(sorted(expected), dtype=np.uint64))
    channels = np.bincount(live.directory.channel[hit], minlength=3)
    assert list(result.by_channel.values()) == channels.tolist()
    after = [r async for r in read_to_end(live.settings, live.settings.inbound_topic)]
    assert len(after) == len(before)

    path = tmp_path / "draft.json"
    path.write_bytes(raw)
    code, out, err = await run_loa(live.settings, "preview", str(path))
    assert code == 0, err
    assert f"would reach {len(expected):,} of {len(live.directory):,} subscribers" in out


async def test_preview_of_a_bad_alert_says_why_it_would_be_rejected(live: LiveLoa) -> None:
    result = await preview(live.settings, orjson.dumps(alert("P-2", ["VN-98"])), live.regions)
    assert isinstance(result, Rejected)
    assert (result.code.value, result.pointer) == ("unknown_region", "/info/0/area/0/regions/0")


async def test_preview_warns_of_a_shape_that_reaches_nobody(live: LiveLoa, tmp_path: Path) -> None:
    # a circle on the Quảng Ninh coast: residents live there, but no subscriber shared a
    # location in it (the synthetic locations are around Hà Nội, Đà Nẵng and HCMC)
    doc = alert("PREVIEW-3", [])
    doc["info"][0]["area"] = [{"areaDesc": "Hạ Long", "circle": ["20.95,107.08 5"]}]
    result = await preview(live.settings, orjson.dumps(doc), live.regions)
    assert isinstance(result, Preview) and result.reached == 0
    assert [w["code"] for w in result.warnings] == ["located_only", "empty_audience"]
    path = tmp_path / "coast.json"
    path.write_bytes(orjson.dumps(doc))
    code, out, err = await run_loa(live.settings, "preview", str(path), "--json")
    assert code == 0, err
    assert [w["code"] for w in orjson.loads(out)["warnings"]] == ["located_only", "empty_audience"]
