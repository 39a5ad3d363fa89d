"""The CAP lifecycle at ingest: re-publishes, Update/Cancel lineages, authority, expiry (pure).

A *message* is one CAP alert (``<sender>/<identifier>``). A *lineage* is the message id of the
original ``Alert``; each accepted ``Update`` or ``Cancel`` that references it (through CAP
``references``: whitespace-separated ``sender,identifier,sent`` triples) adds a version.

The rules (README, "Who may change an alert"), in the order :meth:`LifecycleState.plan` applies
them, the first that fails deciding:

1. **Re-publish.** A message id already accepted is a ``duplicate`` (no tasks), if it keeps its
   status; the same id with another status is ``status_mismatch``.
2. **Expiry.** A message all of whose ``info`` blocks expired before it arrived is ``expired``.
3. **References are full triples.** Every triple of an Update, Cancel, Ack or Error must name an
   accepted message exactly: sender, identifier and ``sent`` (the same instant); a mismatch is
   ``unknown_reference`` naming the part that differs. All triples must name one lineage.
4. **One status per lineage.** A lineage has the status of its Alert; a message of another status
   that references it is ``status_mismatch``: a Test, Exercise, Draft or System message never
   changes an Actual lineage, nor the reverse.
5. **Authority.** Only the lineage's owner (the sender of its Alert) may Update or Cancel it,
   unless the agency registry grants the new sender a right over it (``amends``, checked by the
   caller's ``authority``): else ``not_lineage_owner``.
6. **Cancelled is final.** An Update or Cancel of a cancelled lineage is ``already_cancelled``.

:class:`LifecycleState` is rebuilt from ``loa.alerts.accepted`` (compacted by message id, so it
keeps one record per accepted message) when a worker takes the inbound partition, and updated
in memory as ingest accepts messages. Ingest has one inbound partition, so one agent owns the
whole state and decisions are totally ordered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from streams.errors import AlreadyCancelled, Expired, StatusMismatch, UnknownReference, quote
from streams.records import AcceptedAlert

__all__ = [
    "Authority",
    "LifecycleState",
    "LineageView",
    "Plan",
    "Reference",
    "parse_references",
    "told",
]

#: Message types that start nothing and stop nothing: recorded, no tasks.
SILENT_TYPES = frozenset({"Ack", "Error"})
#: Message types that change a lineage (and so need the right to).
CHANGING_TYPES = frozenset({"Update", "Cancel"})


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``sender,identifier,sent`` triple of CAP ``references``."""

    sender: str
    identifier: str
    sent: str

    @property
    def message_id(self) -> str:
        return f"{self.sender}/{self.identifier}"


def parse_references(value: str) -> list[Reference]:
    """Each well-formed triple of ``value`` (the schema has refused malformed ones already)."""
    out: list[Reference] = []
    for triple in value.split():
        parts = triple.split(",")
        if len(parts) == 3 and all(parts):
            out.append(Reference(*parts))
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """What an acceptable message means for its lineage."""

    message_id: str
    lineage: str
    version: int
    duplicate: bool = False
    #: Sender of the lineage's Alert.
    owner: str = ""
    #: The message's status (its lineage's) and ``sent``: what a later reference must match.
    status: str = ""
    sent: str = ""


@dataclass(frozen=True, slots=True)
class LineageView:
    """What an authority check sees of a lineage: whose it is and where it has reached."""

    lineage: str
    owner: str
    status: str
    #: Region codes and compacted H3 cells of every version's area so far.
    codes: frozenset[str]
    cells: frozenset[str]


#: Raises (``not_lineage_owner``) unless the message's sender may make a ``msg_type`` change
#: to the lineage; ``None`` checks nothing (``loa preview``, tests of other steps).
Authority = Callable[[LineageView, str], None]


@dataclass(slots=True)
class _Message:
    lineage: str
    version: int
    status: str
    sent: str


@dataclass(slots=True)
class _Lineage:
    owner: str
    status: str
    version: int
    cancelled: bool = False
    #: Fingerprint of what the latest version told people (``told``); an Update that does not
    #: change it gives recipients already served no new task.
    told: str = ""
    #: Priority of the latest version that had one (a Cancel goes out at the alert's priority).
    priority: str = ""
    codes: set[str] = field(default_factory=set)
    cells: set[str] = field(default_factory=set)


def told(alert: AcceptedAlert) -> str:
    """What an alert told people: headline, instruction, severity, urgency, expiry per language."""
    content = [alert.expires] + [
        [i.language, i.headline, i.instruction, i.severity, i.urgency] for i in alert.infos
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


def same_instant(a: str, b: str) -> bool:
    """Whether two CAP ``sent`` values name the same instant (``-00:00`` is ``+00:00``)."""
    try:
        return datetime.fromisoformat(a.replace("-00:00", "+00:00")) == datetime.fromisoformat(
            b.replace("-00:00", "+00:00")
        )
    except ValueError:
        return a == b


@dataclass(slots=True)
class LifecycleState:
    """Accepted messages and their lineages."""

    messages: dict[str, _Message] = field(default_factory=dict)
    lineages: dict[str, _Lineage] = field(default_factory=dict)
    #: identifier -> senders that have an accepted message with it (to name a wrong sender).
    _senders: dict[str, set[str]] = field(default_factory=dict)
    #: senders with any accepted message (to tell a wrong sender from a wrong identifier).
    _known_senders: set[str] = field(default_factory=set)

    def plan(
        self,
        *,
        sender: str,
        identifier: str,
        status: str,
        msg_type: str,
        sent: str = "",
        references: str | None,
        expires: list[datetime],
        now: datetime,
        authority: Authority | None = None,
    ) -> Plan:
        """Classify one validated message; raises a poison error when it cannot be accepted."""
        message_id = f"{sender}/{identifier}"
        seen = self.messages.get(message_id)
        if seen is not None:
            if seen.status != status:
                raise StatusMismatch(
                    f"message {quote(message_id)} was accepted with status {seen.status}; a"
                    f" re-publish keeps its status, and a {status} message needs an identifier"
                    " of its own",
                    pointer="/status",
                )
            owner = self.lineages[seen.lineage].owner if seen.lineage in self.lineages else ""
            return Plan(message_id, seen.lineage, seen.version, True, owner, seen.status, seen.sent)
        if expires and all(e <= now for e in expires):
            raise Expired(
                f"every info block expired before arrival (latest {max(expires).isoformat()})",
                pointer="/info",
            )
        if msg_type == "Alert":
            return Plan(message_id, message_id, 1, False, sender, status, sent)
        lineage = self._lineage_of(references)
        state = self.lineages[lineage]
        if state.status != status:
            raise StatusMismatch(
                f"lineage {quote(lineage)} is {state.status}; a {status} {msg_type} cannot"
                f" refer to it (an alert's lineage never mixes statuses)",
                pointer="/references",
            )
        if authority is not None and msg_type in CHANGING_TYPES:
            authority(self.view(lineage), msg_type)
        if state.cancelled and msg_type not in SILENT_TYPES:
            raise AlreadyCancelled(f"lineage {quote(lineage)} was cancelled", pointer="/references")
        version = state.version if msg_type in SILENT_TYPES else state.version + 1
        return Plan(message_id, lineage, version, False, state.owner, status, sent)

    def _lineage_of(self, references: str | None) -> str:
        refs = parse_references(references or "")
        if not refs:
            raise UnknownReference("references is required for this msgType", pointer="/references")
        lineages: list[str] = []
        for ref in refs:
            lineage = self._resolve(ref)
            if lineage not in lineages:
                lineages.append(lineage)
        if len(lineages) > 1:
            raise UnknownReference(
                f"the references name {len(lineages)} lineages ({', '.join(map(quote, lineages))});"
                " an Update or Cancel belongs to one",
                pointer="/references",
            )
        return lineages[0]

    def _resolve(self, ref: Reference) -> str:
        """The lineage of the message ``ref`` names exactly; else ``unknown_reference`` saying
        which part of the triple differs."""
        seen = self.messages.get(ref.message_id)
        if seen is not None:
            if same_instant(seen.sent, ref.sent):
                return seen.lineage
            raise UnknownReference(
                f"reference {quote(ref.message_id)}: sent {quote(ref.sent)} differs from the"
                f" accepted message's sent {quote(seen.sent)}",
                pointer="/references",
            )
        others = sorted(self._senders.get(ref.identifier, ()))
        if others:
            raise UnknownReference(
                f"reference {quote(ref.message_id)}: sender {quote(ref.sender)} differs; identifier"
                f" {quote(ref.identifier)} was accepted from {', '.join(map(quote, others[:3]))}",
                pointer="/references",
            )
        if ref.sender in self._known_senders:
            raise UnknownReference(
                f"reference {quote(ref.message_id)}: identifier {quote(ref.identifier)} names no"
                f" accepted message of sender {quote(ref.sender)}",
                pointer="/references",
            )
        raise UnknownReference(
            f"reference {quote(ref.message_id)}: sender {quote(ref.sender)} has no accepted"
            " message",
            pointer="/references",
        )

    def view(self, lineage: str) -> LineageView:
        state = self.lineages[lineage]
        return LineageView(
            lineage, state.owner, state.status, frozenset(state.codes), frozenset(state.cells)
        )

    def apply(self, alert: AcceptedAlert) -> Plan:
        """Replay one record of ``loa.alerts.accepted`` (what a replica of that topic does)."""
        owner = alert.owner or (alert.sender if alert.msg_type == "Alert" else "")
        plan = Plan(
            alert.message_id, alert.alert_id, alert.version, False, owner, alert.status, alert.sent
        )
        self.record(plan, alert.msg_type, alert)
        return plan

    def record(self, plan: Plan, msg_type: str, alert: AcceptedAlert | None = None) -> None:
        """Remember an accepted message (idempotent: replays apply the same record again)."""
        status = alert.status if alert is not None else plan.status
        sent = alert.sent if alert is not None else plan.sent
        self.messages[plan.message_id] = _Message(plan.lineage, plan.version, status, sent)
        sender, _, identifier = plan.message_id.partition("/")
        if alert is not None:
            sender, identifier = alert.sender, alert.identifier
        self._senders.setdefault(identifier, set()).add(sender)
        self._known_senders.add(sender)
        state = self.lineages.get(plan.lineage)
        if state is None:
            state = self.lineages[plan.lineage] = _Lineage(plan.owner, status, plan.version)
        if alert is not None and msg_type in ("Alert", "Update"):
            _extend(state, alert.targets, alert.cells)
            if plan.version >= state.version:
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


def _extend(state: _Lineage, codes: Iterable[str], cells: Iterable[str]) -> None:
    state.codes.update(codes)
    state.cells.update(cells)
