"""Records at the edges of the data flow: frozen dataclasses and enums, encoded with orjson.

Recipient-scale data never becomes one of these: it stays columnar (``streams.directory``).
The JSON Schemas of every record are in ``schemas/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "LANGUAGES",
    "AcceptedAlert",
    "AlertInfo",
    "FanoutOrder",
    "Priority",
    "Progress",
    "TaskKind",
    "most_urgent",
    "priority_of",
    "recipient_key",
]


class Priority(StrEnum):
    """Loa priority; each has its own send-task topic. Ordered most urgent first."""

    EXTREME = "extreme"
    SEVERE = "severe"
    ROUTINE = "routine"


class TaskKind(StrEnum):
    ALERT = "alert"
    UPDATE = "update"
    CANCEL = "cancel"


#: Channel codes in the order of their ``uint8`` index in the directory.
CHANNELS: tuple[str, ...] = ("oa", "push", "sms")
#: Language codes in the order of their ``uint8`` index in the directory.
LANGUAGES: tuple[str, ...] = ("vi", "en", "km", "hmn", "zh", "fr")
#: The 12 CAP 1.2 ``info/category`` values, in the order of their bit in a directory opt-out mask.
CATEGORIES: tuple[str, ...] = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)

#: Statuses whose alerts produce send tasks; Exercise and Test reach only test audiences.
DELIVERED_STATUSES = frozenset({"Actual", "Exercise", "Test"})


def priority_of(severity: str, urgency: str) -> Priority:
    """CAP severity and urgency to Loa priority (the table in README.md).

    Extreme severity is ``extreme``; Severe is ``severe``, raised to ``extreme`` when the urgency
    is Immediate; everything else is ``routine``.
    """
    if severity == "Extreme":
        return Priority.EXTREME
    if severity == "Severe":
        return Priority.EXTREME if urgency == "Immediate" else Priority.SEVERE
    return Priority.ROUTINE


def most_urgent(priorities: Iterable[Priority]) -> Priority:
    """The most urgent of several priorities (an alert takes its most urgent info block's)."""
    order = list(Priority)
    return min(priorities, key=order.index)


def recipient_key(recipient_id: int) -> bytes:
    """Kafka key of a recipient: its id in ASCII decimal."""
    return b"%d" % recipient_id


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """Content of one language of an alert, for delivery workers."""

    language: str
    event: str
    headline: str
    severity: str
    urgency: str
    description: str | None = None
    instruction: str | None = None


@dataclass(frozen=True, slots=True)
class AcceptedAlert:
    """A normalized message as written to ``loa.alerts.accepted`` (key: ``message_id``).

    ``alert_id`` is the lineage (the message id of the original Alert) and ``version`` counts
    the accepted messages of the lineage; send tasks name both.
    """

    alert_id: str
    version: int
    message_id: str
    sender: str
    identifier: str
    sent: str
    status: str
    msg_type: str
    priority: Priority
    targets: tuple[str, ...]
    test_only: bool
    expires: str | None
    infos: tuple[AlertInfo, ...]
    accepted_at: str
    references: str | None = None
    #: Offset of the inbound record this message was decided from (``loa publish`` waits on it).
    inbound_offset: int | None = None
    #: Sender of the lineage's Alert: the agency the lineage belongs to.
    owner: str = ""
    #: Compacted H3 cells of the message's polygons and circles (its area besides ``targets``).
    cells: tuple[str, ...] = ()
    #: Who the message reaches, by channel, as the directory census counted it at decision time
    #: (``streams.ingest.reach``); None when it reaches nobody by design (Cancel, Draft...).
    reach: dict[str, Any] | None = None
    #: What the sending agency must see about an accepted message (``code``, ``message``,
    #: ``pointer``): ``empty_audience``, ``located_only``, ``partly_outside``, ``reach_unknown``.
    warnings: tuple[dict[str, str], ...] = ()

    @property
    def delivers(self) -> bool:
        return self.status in DELIVERED_STATUSES

    def to_json(self) -> bytes:
        return _dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> AcceptedAlert:
        d = orjson.loads(raw)
        d["priority"] = Priority(d["priority"])
        d["targets"] = tuple(d["targets"])
        d["infos"] = tuple(AlertInfo(**i) for i in d["infos"])
        d["cells"] = tuple(d.get("cells", ()))
        d["warnings"] = tuple(d.get("warnings", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class FanoutOrder:
    """One directory partition's share of an alert's fan-out (``loa.fanout.orders``)."""

    alert_id: str
    version: int
    kind: TaskKind
    priority: Priority
    partition: int
    targets: tuple[str, ...]
    test_only: bool
    #: Compacted H3 cells (hex) of the alert's polygons and circles: subscribers whose location
    #: cell lies inside are targeted too (``streams.regions.resolve_targets``).
    cells: tuple[str, ...] = ()
    #: The alert's CAP categories; subscribers who opted out of all of them are left out,
    #: unless the priority is extreme.
    categories: tuple[str, ...] = ()
    #: Latest ``expires`` of the alert (ISO 8601): the fan-out stops when it passes.
    expires: str | None = None
    #: For an Update: whether it changes what earlier versions told (headline, instruction,
    #: severity, urgency, expiry). Recipients already served get an ``update`` task only then.
    changed: bool = True
    #: Unix seconds when ingest wrote the order (set by the ingest agent as it writes the
    #: decision; the pure decision leaves it None): time to first task counts from it.
    written_at: float | None = None

    def to_json(self) -> bytes:
        return _dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> FanoutOrder:
        d = orjson.loads(raw)
        return cls(
            alert_id=str(d["alert_id"]),
            version=int(d["version"]),
            kind=TaskKind(d["kind"]),
            priority=Priority(d["priority"]),
            partition=int(d["partition"]),
            targets=tuple(str(t) for t in d["targets"]),
            test_only=bool(d["test_only"]),
            cells=tuple(str(c) for c in d.get("cells", ())),
            categories=tuple(str(c) for c in d.get("categories", ())),
            expires=d.get("expires"),
            changed=bool(d.get("changed", True)),
            written_at=None if d.get("written_at") is None else float(d["written_at"]),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """Fan-out progress of one order (``loa.fanout.progress``, compacted)."""

    alert_id: str
    version: int
    partition: int
    priority: str
    targeted: int
    emitted: int
    done: bool
    #: Unix seconds when this worker took the order (a resumed order keeps its first start).
    started_at: float
    #: When the first chunk of tasks was committed (read_committed readers see it from then).
    first_task_at: float | None = None
    #: When the last chunk, or the stop, was committed.
    finished_at: float | None = None
    #: Why the order ended before its audience was exhausted ("cancelled", "expired", "failed":
    #: the order cannot be carried out), if it did.
    stopped: str | None = None
    #: Last recipient id whose task is committed (tasks go in recipient-id order): where a
    #: resumed order continues.
    cursor: int | None = None
    #: Recipients of the audience left out, by reason (``cap``: routine frequency cap).
    suppressed: dict[str, int] = field(default_factory=dict)
    #: When ingest wrote the order (``FanoutOrder.written_at``), for time to first task.
    written_at: float | None = None

    @property
    def key(self) -> bytes:
        return f"{self.alert_id}:{self.version}:{self.partition}".encode()

    def to_json(self) -> bytes:
        return _dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> Progress:
        return cls(**orjson.loads(raw))
