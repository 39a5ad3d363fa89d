"""The CAP lifecycle at ingest: re-publishes, Update/Cancel lineages, expiry (pure, no Kafka).

A *message* is one CAP alert (``<sender>/<identifier>``). A *lineage* is the message id of the
original ``Alert``; each accepted ``Update`` or ``Cancel`` that references it (through CAP
``references``: whitespace-separated ``sender,identifier,sent`` triples) adds a version.

:class:`LifecycleState` is rebuilt from ``loa.alerts.accepted`` (compacted by message id, so it
keeps one record per accepted message) when a worker takes the inbound partition, and updated
in memory as ingest accepts messages. Ingest has one inbound partition, so one agent owns the
whole state and decisions are totally ordered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from streams.errors import AlreadyCancelled, Expired, UnknownReference, quote
from streams.records import AcceptedAlert

__all__ = ["LifecycleState", "Plan", "parse_references", "told"]

#: Message types that start nothing and stop nothing: recorded, no tasks.
SILENT_TYPES = frozenset({"Ack", "Error"})


def parse_references(value: str) -> list[tuple[str, str]]:
    """``(sender, identifier)`` of each ``sender,identifier,sent`` triple; bad triples skipped."""
    out: list[tuple[str, str]] = []
    for triple in value.split():
        parts = triple.split(",")
        if len(parts) == 3 and all(parts):
            out.append((parts[0], parts[1]))
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """What an acceptable message means for its lineage."""

    message_id: str
    lineage: str
    version: int
    duplicate: bool = False


@dataclass(slots=True)
class _Lineage:
    version: int
    cancelled: bool = False
    #: Fingerprint of what the latest version told people (``told``); an Update that does not
    #: change it gives recipients already served no new task.
    told: str = ""
    #: Priority of the latest version that had one (a Cancel goes out at the alert's priority).
    priority: str = ""


def told(alert: AcceptedAlert) -> str:
    """What an alert told people: headline, instruction, severity, urgency, expiry per language."""
    content = [alert.expires] + [
        [i.language, i.headline, i.instruction, i.severity, i.urgency] for i in alert.infos
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


@dataclass(slots=True)
class LifecycleState:
    """Accepted messages and their lineages."""

    messages: dict[str, tuple[str, int]] = field(default_factory=dict)
    lineages: dict[str, _Lineage] = field(default_factory=dict)

    def plan(
        self,
        *,
        sender: str,
        identifier: str,
        msg_type: str,
        references: str | None,
        expires: list[datetime],
        now: datetime,
    ) -> Plan:
        """Classify one validated message; raises a poison error when it cannot be accepted."""
        message_id = f"{sender}/{identifier}"
        seen = self.messages.get(message_id)
        if seen is not None:
            return Plan(message_id, seen[0], seen[1], duplicate=True)
        if expires and all(e <= now for e in expires):
            raise Expired(
                f"every info block expired before arrival (latest {max(expires).isoformat()})",
                pointer="/info",
            )
        if msg_type == "Alert":
            return Plan(message_id, message_id, 1)
        lineage = self._lineage_of(references)
        state = self.lineages[lineage]
        if state.cancelled and msg_type not in SILENT_TYPES:
            raise AlreadyCancelled(f"lineage {lineage} was cancelled", pointer="/references")
        if msg_type in SILENT_TYPES:
            return Plan(message_id, lineage, state.version)
        return Plan(message_id, lineage, state.version + 1)

    def _lineage_of(self, references: str | None) -> str:
        if not references:
            raise UnknownReference("references is required for this msgType", pointer="/references")
        for sender, identifier in parse_references(references):
            seen = self.messages.get(f"{sender}/{identifier}")
            if seen is not None:
                return seen[0]
        raise UnknownReference(
            f"none of the references is an accepted alert: {quote(references[:200])}",
            pointer="/references",
        )

    def apply(self, alert: AcceptedAlert) -> Plan:
        """Replay one record of ``loa.alerts.accepted`` (what a replica of that topic does)."""
        plan = Plan(alert.message_id, alert.alert_id, alert.version)
        self.record(plan, alert.msg_type, alert)
        return plan

    def record(self, plan: Plan, msg_type: str, alert: AcceptedAlert | None = None) -> None:
        """Remember an accepted message (idempotent: replays apply the same record again)."""
        self.messages[plan.message_id] = (plan.lineage, plan.version)
        state = self.lineages.get(plan.lineage)
        if state is None:
            state = self.lineages[plan.lineage] = _Lineage(plan.version)
        if alert is not None and msg_type in ("Alert", "Update") and plan.version >= state.version:
            state.told = told(alert)
            state.priority = alert.priority.value
        state.version = max(state.version, plan.version)
        if msg_type == "Cancel":
            state.cancelled = True

    def told(self, lineage: str) -> str:
        state = self.lineages.get(lineage)
        return state.told if state is not None else ""

    def priority(self, lineage: str) -> str:
        state = self.lineages.get(lineage)
        return state.priority if state is not None else ""

    def is_cancelled(self, lineage: str) -> bool:
        state = self.lineages.get(lineage)
        return state is not None and state.cancelled
