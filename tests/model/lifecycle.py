"""A reference model of who may change an alert: CAP 1.2 lifecycle plus Loa's registry rules.

Written from the rules as the README states them ("Who may change an alert") and CAP 1.2
section 3.2.1 (``references``: ``sender,identifier,sent`` triples; ``msgType`` Alert, Update,
Cancel, Ack, Error; ``status``), not from the implementation: it imports nothing from
``streams``. The tests drive the real decision function and the real worker with random
sequences of messages and compare every decision, and the lineages' state, with this model.

The model covers region-code areas (shapes are checked by the region tests), one severity the
test agencies may all use, and messages that pass the format checks: it decides the steps that
depend on history and rights. Its order of checks is the README's:

1. re-publish (same sender and identifier as an accepted message): ``duplicate`` if the status
   is the same, else ``status_mismatch``;
2. every info block expired: ``expired``;
3. an Alert starts a lineage owned by its sender (version 1);
4. Update, Cancel, Ack, Error: no references, a triple naming no accepted message exactly, or
   triples naming two lineages: ``unknown_reference``; the lineage has another status:
   ``status_mismatch``; an Update or Cancel by a sender that is not the owner and holds no grant
   over the owner covering the message type and the lineage's whole area:
   ``not_lineage_owner``; an Update or Cancel of a cancelled lineage: ``already_cancelled``;
5. the sender's rights: a status it may not use: ``status_not_allowed``; an area outside its
   jurisdiction: ``out_of_jurisdiction``.

An accepted Alert or Update adds its area to the lineage; an Update or Cancel adds a version
(Ack and Error do not); a Cancel makes the lineage cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Agency", "Message", "Model", "Outcome"]


@dataclass(frozen=True)
class Agency:
    id: str
    #: Region-code prefixes (whole segments).
    jurisdiction: tuple[str, ...]
    statuses: frozenset[str]
    #: (owners or "*", message types) the agency may change beside its own lineages.
    grants: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()

    def covers(self, code: str) -> bool:
        return any(code == p or code.startswith(p + "-") for p in self.jurisdiction)

    def granted(self, owner: str, msg_type: str, area: set[str]) -> bool:
        return any(
            msg_type in types and ("*" in owners or owner in owners)
            for owners, types in self.grants
        ) and all(self.covers(code) for code in area)


@dataclass(frozen=True)
class Message:
    sender: str
    identifier: str
    #: Seconds after a fixed instant (the tests render it as an ISO time).
    sent: int
    status: str
    msg_type: str
    #: ``(sender, identifier, sent)`` triples.
    references: tuple[tuple[str, str, int], ...] = ()
    #: Region codes of its area (Alert and Update).
    area: tuple[str, ...] = ()
    expired: bool = False


@dataclass(frozen=True)
class Outcome:
    #: ``accepted``, ``duplicate`` or a rejection code.
    code: str
    lineage: str | None = None
    version: int | None = None


@dataclass
class _Lineage:
    owner: str
    status: str
    version: int
    cancelled: bool = False
    area: set[str] = field(default_factory=set)


@dataclass
class Model:
    agencies: dict[str, Agency]
    #: (sender, identifier) -> (sent, status, lineage, version)
    messages: dict[tuple[str, str], tuple[int, str, str, int]] = field(default_factory=dict)
    lineages: dict[str, _Lineage] = field(default_factory=dict)

    def decide(self, m: Message) -> Outcome:
        """The decision for ``m``; the model's state changes only when it is accepted."""
        key = (m.sender, m.identifier)
        if key in self.messages:
            _, status, lineage, version = self.messages[key]
            if status != m.status:
                return Outcome("status_mismatch")
            return Outcome("duplicate", lineage, version)
        if m.expired:
            return Outcome("expired")
        agency = self.agencies[m.sender]
        if m.msg_type == "Alert":
            lineage_id = f"{m.sender}/{m.identifier}"
            rights = self._rights(agency, m)
            if rights is not None:
                return Outcome(rights)
            self.lineages[lineage_id] = _Lineage(m.sender, m.status, 1, area=set(m.area))
            self.messages[key] = (m.sent, m.status, lineage_id, 1)
            return Outcome("accepted", lineage_id, 1)
        found: list[str] = []
        for sender, identifier, sent in m.references:
            seen = self.messages.get((sender, identifier))
            if seen is None or seen[0] != sent:
                return Outcome("unknown_reference")
            if seen[2] not in found:
                found.append(seen[2])
        if len(found) != 1:
            return Outcome("unknown_reference")
        lineage_id = found[0]
        lineage = self.lineages[lineage_id]
        if lineage.status != m.status:
            return Outcome("status_mismatch")
        changes = m.msg_type in ("Update", "Cancel")
        if (
            changes
            and m.sender != lineage.owner
            and not agency.granted(lineage.owner, m.msg_type, lineage.area)
        ):
            return Outcome("not_lineage_owner")
        if changes and lineage.cancelled:
            return Outcome("already_cancelled")
        rights = self._rights(agency, m)
        if rights is not None:
            return Outcome(rights)
        if changes:
            lineage.version += 1
        if m.msg_type == "Update":
            lineage.area.update(m.area)
        if m.msg_type == "Cancel":
            lineage.cancelled = True
        self.messages[key] = (m.sent, m.status, lineage_id, lineage.version)
        return Outcome("accepted", lineage_id, lineage.version)

    @staticmethod
    def _rights(agency: Agency, m: Message) -> str | None:
        if m.status not in agency.statuses:
            return "status_not_allowed"
        if not all(agency.covers(code) for code in m.area):
            return "out_of_jurisdiction"
        return None

    def state(self) -> dict[str, tuple[str, str, int, bool]]:
        """Every lineage: (owner, status, version, cancelled)."""
        return {
            lineage_id: (s.owner, s.status, s.version, s.cancelled)
            for lineage_id, s in self.lineages.items()
        }
