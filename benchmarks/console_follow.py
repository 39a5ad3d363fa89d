"""Does an open follow page slow a fan-out? National alerts with and without the console's
follow endpoint polled during their fan-out, in one run (issue 23: the follow page stays live
during a large fan-out without slowing it).

On the broker at ``LOA_BOOTSTRAP_SERVERS`` (default 127.0.0.1:19092), topics of a prefix of its
own (deleted after): N synthetic subscribers, a ``loa worker`` subprocess, and ``loa console``
in this process. Each round sends a national Actual Extreme alert of ``nchmf.gov.vn`` through the
console (author drafts and submits, approver approves), then waits for its fan-out; in the
``follow`` rounds a client polls ``GET /api/alerts/{id}/follow`` every ``--poll`` seconds (a page
polls every 2 s) from the approval until the fan-out is done. The rounds alternate
(plain, follow, plain, follow, ...) so warm-up and the machine's other load fall on both. The
fan-out's seconds are its own (first order started to last order finished, from the progress
records), as in ``loa bench``.

    python -m benchmarks.console_follow [--subscribers 2e6] [--rounds 4] [--poll 0.5]

Writes benchmarks/results/console_follow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.common import write_results
from benchmarks.harness import own_figures
from streams.console import Console
from streams.console.users import Role, User, hash_password, write_users
from streams.demo.localrun import WorkerProcess
from streams.directory.census_replica import CensusReplica
from streams.directory.load import load_synthetic
from streams.ingest.agency_service import ensure_local_key
from streams.kafkaio.clients import create_topics
from streams.receipts.observe import watch_progress
from streams.regions import registry
from streams.settings.model import Settings

AGENCY = "nchmf.gov.vn"
AGENCIES = Path(__file__).resolve().parents[1] / "deploy" / "agencies"
PASSWORD = "benchmark password"


async def _wait_census(settings: Settings) -> None:
    replica = CensusReplica(settings, registry())
    await replica.start()
    try:
        async with asyncio.timeout(600):
            while len(replica.censuses()) < settings.partitions:
                await asyncio.sleep(1)
                await replica.ready(timeout_s=30)
    finally:
        await replica.stop()


class _Browser:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.headers = http, url, {}

    async def login(self, user: str) -> None:
        body = {"username": user, "password": PASSWORD}
        async with self.http.post(f"{self.url}/api/login", json=body) as r:
            me = await r.json()
            self.headers = {
                "Cookie": f"loa_console={r.cookies['loa_console'].value}",
                "X-CSRF-Token": me["csrf"],
            }

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.url + path, json=body, headers=self.headers) as r:
            data = await r.json()
            assert r.status < 300, data
            return data


def _draft(n: int) -> dict[str, Any]:
    expires = (datetime.now(UTC) + timedelta(hours=6)).isoformat(timespec="seconds")
    return {
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Bão",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Observed",
        "category": ["Met"],
        "expires": expires,
        "infos": [{"language": "vi-VN", "headline": f"Bão số {n}: cảnh báo toàn quốc"}],
        "areas": {"regions": ["VN"]},
    }


async def _round(
    settings: Settings, author: _Browser, approver: _Browser, n: int, poll_s: float | None
) -> dict[str, Any]:
    record = await author.call("POST", "/api/drafts", _draft(n))
    await author.call("POST", f"/api/drafts/{record['id']}/submit")
    sent = await approver.call("POST", f"/api/drafts/{record['id']}/approve")
    assert sent["decision"]["outcome"] == "accepted", sent["decision"]
    alert_id = sent["alert_id"]
    polls: list[float] = []
    done = asyncio.Event()

    async def follow() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await approver.call("GET", f"/api/alerts/{alert_id}/follow")
            polls.append(time.perf_counter() - started)
            await asyncio.sleep(poll_s or 1.0)

    poller = asyncio.create_task(follow()) if poll_s else None
    try:
        progress = await watch_progress(settings, alert_id, timeout_s=900)
    finally:
        done.set()
        if poller is not None:
            await poller
    figures = own_figures(progress)
    return {
        "follow": poll_s is not None,
        "emitted": figures["emitted"],
        "fanout_s": round(figures["seconds"], 3),
        "tasks_per_s": round(figures["per_s"]),
        "follow_polls": len(polls),
        "follow_poll_median_s": round(statistics.median(polls), 4) if polls else None,
    }


async def run(n: int, rounds: int, poll_s: float, partitions: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("LOA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    work = Path(tempfile.mkdtemp(prefix="console-follow-"))
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"bench-follow-{tag}",
        app_id=f"bench-follow-{tag}",
        partitions=partitions,
        data_dir=str(work / "data"),
    )
    await create_topics(settings)
    await ensure_local_key(settings, AGENCY, work / "keys", agencies_path=AGENCIES)
    await write_users(
        settings,
        [
            User(name, AGENCY, (Role(name),), hash_password(PASSWORD))
            for name in ("author", "approver")
        ],
    )
    started = time.perf_counter()
    await load_synthetic(settings, n, 1, registry())
    loaded = time.perf_counter() - started
    worker = WorkerProcess(settings, work / "worker.log", LOA_METRICS_PORT="0").start()
    console = Console(replace(settings, console_keys_dir=str(work / "keys")))
    try:
        await _wait_census(settings)
        port = await console.start(port=0)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            author, approver = _Browser(http, url), _Browser(http, url)
            await author.login("author")
            await approver.login("approver")
            results = []
            for i in range(rounds):
                poll = poll_s if i % 2 else None
                results.append(await _round(settings, author, approver, i + 1, poll))
                print(orjson.dumps(results[-1]).decode(), flush=True)
    finally:
        await console.stop()
        worker.stop()
        _drop(bootstrap, settings.topic_prefix)
    return {"directory_load_s": round(loaded, 1), "rounds": results}


def _drop(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}.")]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=float, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    n = int(args.subscribers)
    report = asyncio.run(run(n, args.rounds, args.poll, args.partitions))
    rounds = report["rounds"]
    plain = [r["fanout_s"] for r in rounds if not r["follow"]]
    followed = [r["fanout_s"] for r in rounds if r["follow"]]
    summary = {
        "fanout_s_median_plain": statistics.median(plain) if plain else None,
        "fanout_s_median_followed": statistics.median(followed) if followed else None,
    }
    write_results(
        "console_follow",
        {"subscribers": n, "partitions": args.partitions, "poll_s": args.poll, **summary, **report},
    )
    print(f"fan-out of {n:,}: {summary} (each round above)")


if __name__ == "__main__":
    main()
