"""Console preview benchmark: a national alert's preview over N subscribers (issue 23: < 1 s).

In-process, no broker. N synthetic subscribers are split over ``--partitions`` directory
partitions and each partition's census is built as a worker builds it; then the console's
preview (:func:`streams.console.audience.census_audience`, what ``POST /api/drafts/{id}/preview``
runs after ingest's decision) counts a national alert (``VN``), a province (``VN-51``) and a
30 km circle, and the answer's JSON size is measured (the map cells are aggregated to H3
resolution 5).

    python -m benchmarks.console_preview [--subscribers 10000000] [--partitions 8] [--repeat 5]
                                         [--http]

With ``--http`` (needs the broker at ``LOA_BOOTSTRAP_SERVERS``, default 127.0.0.1:19092) the
censuses are also written to a census topic of a prefix of the benchmark's own, a ``loa console``
is started in this process on it, and the whole request is timed as the browser makes it:
``POST /api/drafts/{id}/preview`` of a national draft (session, ingest's decision on the
draft, the census count, JSON), and ``POST /api/check``. The topics are deleted after.

Writes benchmarks/results/console_preview.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h3
import numpy as np
import orjson

from benchmarks.common import write_results
from streams.console import Console
from streams.console.audience import census_audience
from streams.console.users import Role, User, hash_password, write_users
from streams.directory.census import CENSUS_MAX_MESSAGE_BYTES, Census, build_census, encode_census
from streams.directory.index import DirectoryPartition
from streams.directory.synthetic import synthetic_subscribers
from streams.ingest.agencies import load_agency_files
from streams.ingest.agency_service import publish_agencies
from streams.kafkaio.clients import create_topics, make_producer
from streams.regions import circle_cells, registry
from streams.settings.model import Settings

REGIONS = registry()
AGENCIES = Path(__file__).resolve().parents[1] / "deploy" / "agencies"


def _censuses(n: int, partitions: int) -> dict[int, Census]:
    out: dict[int, Census] = {}
    per = n // partitions
    for p in range(partitions):
        index = DirectoryPartition()
        index.apply(synthetic_subscribers(per, 1 + p, REGIONS, id_base=p * per))
        out[p] = build_census(
            index.columns(),
            partition=p,
            offset=0,
            made_at=time.time(),
            regions=REGIONS,
            h3_resolution=7,
        )
    return out


def _time(censuses: dict[int, Census], repeat: int, **target: Any) -> dict[str, Any]:
    times, answer = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        answer = census_audience(
            censuses, REGIONS, test_only=False, partitions=len(censuses), **target
        )
        times.append(time.perf_counter() - started)
    return {
        "median_s": round(statistics.median(times), 4),
        "max_s": round(max(times), 4),
        "reached": answer["reached"],
        "cells": len(answer["cells"]),
        "answer_bytes": len(orjson.dumps(answer)),
    }


_PASSWORD = "benchmark password"
_NATIONAL = "nchmf.gov.vn"


async def _http(censuses: dict[int, Census], repeat: int) -> dict[str, Any]:
    """The preview and check requests of a national draft, timed end to end."""
    tag = uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("LOA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"bench-console-{tag}",
        app_id=f"bench-console-{tag}",
        partitions=len(censuses),
    )
    await create_topics(settings)
    await publish_agencies(settings, load_agency_files(AGENCIES))
    producer = make_producer(settings, max_request_size=CENSUS_MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for p, census in censuses.items():
            value = encode_census(census)
            await producer.send_and_wait(settings.census_topic, value, key=str(p).encode())
    finally:
        await producer.stop()
    user = User("bench", _NATIONAL, (Role.AUTHOR,), hash_password(_PASSWORD))
    await write_users(settings, [user])
    console = Console(replace(settings, console_keys_dir=""))
    port = await console.start(port=0)
    try:
        return await _requests(f"http://127.0.0.1:{port}", repeat)
    finally:
        await console.stop()
        _drop(bootstrap, settings.topic_prefix)


async def _requests(url: str, repeat: int) -> dict[str, Any]:
    import aiohttp

    expires = (datetime.now(UTC) + timedelta(hours=6)).isoformat(timespec="seconds")
    draft = {
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Bão",
        "urgency": "Expected",
        "severity": "Severe",
        "certainty": "Likely",
        "category": ["Met"],
        "expires": expires,
        "infos": [{"language": "vi-VN", "headline": "Cảnh báo bão toàn quốc"}],
        "areas": {"regions": ["VN"]},
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/api/login", json={"username": "bench", "password": _PASSWORD}
        ) as r:
            me = await r.json()
            headers = {
                "Cookie": f"loa_console={r.cookies['loa_console'].value}",
                "X-CSRF-Token": me["csrf"],
            }
        async with http.post(f"{url}/api/drafts", json=draft, headers=headers) as r:
            record = await r.json()
            assert r.status == 201, record
        out: dict[str, Any] = {}
        for name, path, body in (
            ("preview", f"/api/drafts/{record['id']}/preview", None),
            ("check", "/api/check", draft),
        ):
            times, size, answer = [], 0, {}
            for _ in range(repeat):
                started = time.perf_counter()
                async with http.post(f"{url}{path}", json=body, headers=headers) as r:
                    raw = await r.read()
                    assert r.status == 200, raw
                times.append(time.perf_counter() - started)
                size, answer = len(raw), orjson.loads(raw)
            out[name] = {
                "median_s": round(statistics.median(times), 4),
                "max_s": round(max(times), 4),
                "answer_bytes": size,
            }
            if name == "preview":
                out[name].update(reached=answer["reached"], cells=len(answer["cells"]))
        return out


def _drop(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}.")]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=float, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also time the console's requests")
    args = parser.parse_args()
    n = int(args.subscribers)
    started = time.perf_counter()
    censuses = _censuses(n, args.partitions)
    built = time.perf_counter() - started
    circle = h3.compact_cells(circle_cells(15.12, 108.8, 30.0, 7))
    results = {
        "national": _time(censuses, args.repeat, targets=["VN"], cells=[]),
        "province": _time(censuses, args.repeat, targets=["VN-51"], cells=[]),
        "circle_30km": _time(censuses, args.repeat, targets=[], cells=list(circle)),
    }
    located = sum(int(np.sum(c.count)) for c in censuses.values())
    http = asyncio.run(_http(censuses, args.repeat)) if args.http else None
    report = write_results(
        "console_preview",
        {
            "subscribers": n,
            "partitions": args.partitions,
            "located": located,
            "censuses_built_s": round(built, 2),
            "preview": results,
            "http": http,
        },
    )
    for name, r in results.items():
        print(
            f"{name:12} {r['median_s'] * 1000:7.1f} ms median ({r['max_s'] * 1000:.1f} max), "
            f"reached {r['reached']:,}, {r['cells']} cells, {r['answer_bytes']:,} bytes"
        )
    for name, r in (http or {}).items():
        print(
            f"http {name:7} {r['median_s'] * 1000:7.1f} ms median ({r['max_s'] * 1000:.1f} max),"
            f" {r['answer_bytes']:,} bytes"
        )
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
