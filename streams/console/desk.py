"""The console's work on drafts with the live state: checks, previews, signing and sending,
following a sent alert. The handlers call it; the rules are in the pure modules.

Where it sits: between the console's handlers and Kafka. It follows, read-only, what ingest and
the fan-out already publish: the accepted alerts (the lifecycle, so an Update's authority is
checked as ingest will), the agency registry, the directory census (who an alert reaches), the
channels' limits, the decisions (by inbound offset, as the gateway waits for them) and, per
followed alert, the progress and receipt tallies (:class:`streams.receipts.status.StatusReader`,
kept open between polls and read incrementally: a poll costs the records written since the
last one and nothing on the fan-out's path).

Checks run :func:`streams.ingest.decide` on the alert a draft would make, with the agency's
rights (statuses, severity, jurisdiction) and the lifecycle but not the signature (the console
signs only once approved). Sending signs with the agency's key from ``LOA_CONSOLE_KEYS_DIR`` and
writes through :func:`streams.agency.inbound.send_inbound`: ingest is the one authority.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.agency.inbound import send_inbound
from streams.console.audience import census_audience, eta_s
from streams.console.drafts import Draft, build_alert, field_of
from streams.directory.census_replica import CensusReplica
from streams.errors import ConsoleRefused
from streams.fanout.encode import KINDS
from streams.fanout.limits import decode_limit
from streams.gateway.decisions import DecisionFollower
from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.agencies import AgencyRegistry
from streams.ingest.lifecycle import LifecycleState
from streams.ingest.signatures import KeyPair, load_private_key, signature_headers
from streams.kafkaio.replica import CompactedReplica
from streams.receipts.status import StatusReader
from streams.records import AcceptedAlert
from streams.regions import RegionRegistry
from streams.settings.model import Settings

__all__ = ["Checked", "Desk", "load_keys"]

log = logging.getLogger("loa.console")

_WAIT_S = 10.0
#: Followed alerts whose reader stays open between polls, and how long an unpolled one stays.
_FOLLOWED = 32
_FOLLOW_IDLE_S = 120.0


@dataclass(frozen=True, slots=True)
class Checked:
    """Ingest's verdict on a draft: problems by field, warnings, and the decision itself."""

    problems: tuple[tuple[str, str], ...]
    warnings: tuple[dict[str, str], ...]
    decision: Accepted | Duplicate | Rejected
    raw: bytes

    def to_doc(self) -> dict[str, Any]:
        return {
            "problems": [{"field": f, "message": m} for f, m in self.problems],
            "warnings": [
                {"code": w.get("code", ""), "message": w.get("message", "")} for w in self.warnings
            ],
        }


def load_keys(keys_dir: str) -> dict[str, list[KeyPair]]:
    """Agency -> its signing keys in ``keys_dir`` (``*.key`` as ``loa keys new`` writes them);
    an unreadable file is skipped with a warning (it signs nothing)."""
    keys: dict[str, list[KeyPair]] = {}
    folder = Path(keys_dir)
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else []:
        try:
            pair = load_private_key(path.read_bytes())
            if path.stat().st_mode & 0o077:
                log.warning("console: key file %s is readable by others than its owner", path)
        except (OSError, ValueError) as exc:
            log.warning("console: key file %s not used: %s", path, exc)
            continue
        keys.setdefault(pair.agency, []).append(pair)
    return keys


class _Followed:
    def __init__(self, reader: StatusReader) -> None:
        self.reader = reader
        self.polled = time.monotonic()
        self.lock = asyncio.Lock()


class Desk:
    """Live state for checks, previews, sending and following (read-only but for sending).

    Why this long: it owns the replicas every console action reads; each method is short."""

    def __init__(self, settings: Settings, regions: RegionRegistry) -> None:
        self.settings = settings
        self.regions = regions
        self.census = CensusReplica(settings, regions)
        self.accepted: CompactedReplica[AcceptedAlert] = CompactedReplica(
            settings,
            settings.accepted_topic,
            partitions=1,
            decode=lambda _k, v: AcceptedAlert.from_json(v),
            name="console-accepted",
        )
        self.limits: CompactedReplica[float] = CompactedReplica(
            settings,
            settings.channels_topic,
            partitions=1,
            decode=decode_limit,
            name="console-limits",
        )
        self.follower = DecisionFollower(settings)
        self._lifecycle: tuple[int, LifecycleState] = (-1, LifecycleState())
        self._followed: dict[str, _Followed] = {}

    async def start(self) -> None:
        await self.follower.start()
        for replica in (self.census, self.accepted, self.limits):
            await replica.start()

    async def stop(self) -> None:
        for followed in self._followed.values():
            await followed.reader.__aexit__()
        self._followed.clear()
        for replica in (self.census, self.accepted, self.limits):
            await replica.stop()
        await self.follower.stop()

    async def lifecycle(self) -> LifecycleState:
        """The lifecycle as a worker holds it (the accepted topic, replayed), rebuilt only when
        the topic moved."""
        await self.accepted.ready(timeout_s=_WAIT_S)
        version, state = self._lifecycle
        if version != self.accepted.version:
            state = LifecycleState()
            for alert in self.accepted.items().values():
                state.apply(alert)
            self._lifecycle = (self.accepted.version, state)
        return state

    # --- checks ----------------------------------------------------------------------------

    async def check(
        self,
        draft: Draft,
        registry: AgencyRegistry,
        agency: str,
        now: datetime,
        *,
        identifier: str = "console-check",
    ) -> Checked:
        doc = build_alert(
            draft, identifier=identifier, sender=agency, sent=now, regions=self.regions
        )
        raw = orjson.dumps(doc)
        await self.census.ready(timeout_s=_WAIT_S)
        decision = decide(
            raw,
            regions=self.regions,
            partitions=self.settings.partitions,
            max_bytes=self.settings.max_alert_bytes,
            state=await self.lifecycle(),
            agencies=registry,
            require_signatures=False,
            h3_resolution=self.settings.h3_resolution,
            cancel_tasks=self.settings.cancel_tasks,
            now=now,
            reach=self.census.reach,
        )
        if isinstance(decision, Rejected):
            problems = tuple((field_of(p.pointer), p.message) for p in decision.all_problems)
            return Checked(problems, (), decision, raw)
        if isinstance(decision, Duplicate):
            return Checked((("", "this alert was sent already"),), (), decision, raw)
        return Checked((), tuple(decision.alert.warnings), decision, raw)

    # --- preview ---------------------------------------------------------------------------

    async def preview(self, checked: Checked) -> dict[str, Any]:
        decision = checked.decision
        if not isinstance(decision, Accepted) or not decision.orders:
            raise ConsoleRefused(
                422, "invalid", "the draft does not pass the checks", problems=checked.problems
            )
        order = decision.orders[0]
        await self.limits.ready(timeout_s=_WAIT_S)
        counted = census_audience(
            self.census.censuses(),
            self.regions,
            targets=order.targets,
            cells=order.cells,
            test_only=order.test_only,
            partitions=self.settings.partitions,
        )
        limits = {k.decode(): v for k, v in self.limits.items().items()}
        kinds = dict.fromkeys((k.value for k in KINDS), 0)
        # who a lineage already reached is not in the census: an Update counts as update
        kind = {"Alert": "alert", "Update": "update", "Cancel": "cancel"}[decision.alert.msg_type]
        kinds[kind] = counted["reached"]
        return {
            **counted,
            "by_kind": kinds,
            "warnings": [
                {"code": w.get("code", ""), "message": w.get("message", "")}
                for w in checked.warnings
            ],
            "eta_s": eta_s(counted["by_channel"], limits),
            "version": decision.plan.version,
            "msg_type": decision.alert.msg_type,
        }

    # --- sending ---------------------------------------------------------------------------

    async def send(
        self, producer: AIOKafkaProducer, raw: bytes, key: KeyPair
    ) -> tuple[str, dict[str, Any]]:
        """Sign ``raw`` with ``key``, write it to the inbound topic and wait for ingest's
        decision: ``(outcome, record)``, outcome ``pending`` when none came in time."""
        offset = await send_inbound(producer, self.settings, raw, signature_headers(key, raw))
        try:
            decided = await self.follower.wait(offset, self.settings.gateway_decision_timeout_s)
        except RuntimeError:
            decided = None
        if decided is None:
            return "pending", {"inbound_offset": offset}
        return decided

    # --- following -------------------------------------------------------------------------

    async def follow(self, alert_id: str) -> dict[str, Any]:
        followed = self._followed.get(alert_id)
        if followed is None:
            await self._evict()
            reader = StatusReader(self.settings, alert_id)
            await reader.__aenter__()
            followed = self._followed[alert_id] = _Followed(reader)
        async with followed.lock:
            followed.polled = time.monotonic()
            await followed.reader.catch_up(timeout_s=_WAIT_S)
            status = followed.reader.status()
        channels = {
            name: {
                "tasks": None,
                "delivered": c.delivered,
                "retrying": c.retrying,
                "fell_back": c.fell_back,
                "failed": c.failed_for_good,
            }
            for name, c in status.channels.items()
        }
        return {
            "lineage": alert_id,
            "version": status.version,
            "tasks": status.emitted,
            "targeted": status.targeted,
            "delivered": status.delivered,
            "retrying": status.retrying,
            "fell_back": sum(status.fallbacks.values()),
            "failed": status.failed,
            "by_channel": channels,
            "fanout_done": status.fanout_done,
            "done": status.done,
        }

    async def _evict(self) -> None:
        now = time.monotonic()
        stale = [a for a, f in self._followed.items() if now - f.polled > _FOLLOW_IDLE_S]
        if len(self._followed) - len(stale) >= _FOLLOWED:
            stale.append(min(self._followed, key=lambda a: self._followed[a].polled))
        for alert_id in stale:
            followed = self._followed.pop(alert_id)
            await followed.reader.__aexit__()
