"""The ingest decision: raw bytes in, one of accepted, duplicate or rejected out, never a raise.

Steps, in order (the first failure decides): size; parse (CAP 1.2 XML through the hardened
:mod:`streams.ingest.cap`, or Loa JSON: both become the same dict); schema; lifecycle (duplicate,
``references``, expiry); targets; outputs. The function is pure: the lifecycle state is read,
not written (the agent records an accepted message once its decision is on Kafka), and the
clock is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import (
    InternalError,
    PoisonError,
    Problem,
    RejectionCode,
    TooLarge,
    Unsupported,
)
from streams.ingest.agencies import Agency, AgencyRegistry, identify
from streams.ingest.authority import authorize, authorize_change
from streams.ingest.cap import detect_format, json_pointer_to_xpath, parse_cap
from streams.ingest.json_alert import decode_json_alert, validate_json_alert
from streams.ingest.lifecycle import Authority, LifecycleState, LineageView, Plan, told
from streams.ingest.reach import ReachCounter, warnings_for
from streams.ingest.xmldsig import authenticate
from streams.records import (
    AcceptedAlert,
    AlertInfo,
    FanoutOrder,
    Priority,
    TaskKind,
    most_urgent,
    priority_of,
)
from streams.regions import DEFAULT_H3_RESOLUTION, RegionRegistry, Targets
from streams.regions import resolve_targets as resolve_areas

__all__ = ["Accepted", "Decision", "Duplicate", "Rejected", "decide", "rejection_record"]

_EXCERPT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Accepted:
    alert: AcceptedAlert
    orders: tuple[FanoutOrder, ...]
    plan: Plan


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A re-publish of a message already accepted: no new tasks."""

    plan: Plan
    sender: str
    identifier: str


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectionCode
    message: str
    pointer: str
    sender: str | None
    identifier: str | None
    #: Every fault found, the first being ``message``/``pointer`` (at most ``MAX_PROBLEMS``).
    problems: tuple[Problem, ...] = ()

    @property
    def all_problems(self) -> tuple[Problem, ...]:
        """``problems``, or the one fault when only that is known."""
        return self.problems or (Problem(self.pointer, self.message),)


Decision = Accepted | Duplicate | Rejected
Headers = Iterable[tuple[str, bytes]] | None


def decide(
    raw: bytes | None,
    *,
    regions: RegionRegistry,
    partitions: int,
    max_bytes: int,
    state: LifecycleState | None = None,
    agencies: AgencyRegistry | None = None,
    headers: Headers = None,
    require_signatures: bool = True,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
    cancel_tasks: bool = True,
    now: datetime | None = None,
    reach: ReachCounter | None = None,
) -> Decision:
    """Decide one inbound record. Any exception is turned into a rejection, never raised.

    ``agencies`` is the registry the sender must be in, signing the raw bytes (``headers``:
    ``loa-signature``, ``loa-key-id``; or, for CAP without them, an enveloped XML-DSig signature
    by a registered certificate, :mod:`streams.ingest.xmldsig`) unless ``require_signatures``
    is off, and whose rights
    (statuses, severity, jurisdiction) the alert must keep within. ``None`` skips the agency
    checks: only ``loa preview`` and unit tests of the other steps do that; the agent never.
    ``reach`` counts who an accepted Alert or Update reaches (the directory census): the
    decision carries it and the warnings an agency must see (:mod:`streams.ingest.reach`).
    """
    doc: dict[str, Any] | None = None
    now = now or datetime.now(UTC)
    raw = raw or b""
    xml = parsed = False
    try:
        if len(raw) > max_bytes:
            raise TooLarge(f"record is {len(raw)} bytes, the limit is {max_bytes}")
        xml = detect_format(raw) == "xml"
        doc = parse_cap(raw, max_bytes=max_bytes) if xml else decode_json_alert(raw)
        parsed = True
        validate_json_alert(doc, cap=xml)
        agency: Agency | None = None
        if agencies is not None and require_signatures:
            # Loa's headers, or an XML-DSig signature: then ``doc`` is what the signature covers
            agency, doc = authenticate(
                agencies, doc, raw, headers, xml=xml, now=now, max_bytes=max_bytes
            )
        elif agencies is not None:
            agency = identify(agencies, doc["sender"])
        return _accept(
            doc,
            regions=regions,
            partitions=partitions,
            state=state,
            agency=agency,
            h3_resolution=h3_resolution,
            cancel_tasks=cancel_tasks,
            now=now,
            reach=reach,
        )
    except PoisonError as exc:
        if xml and parsed and exc.pointer and not exc.problems:
            # the parser and the schema check speak XPath already; later steps name Loa's
            # JSON mapping of the element, so translate to the element the agency wrote
            exc.pointer = json_pointer_to_xpath(exc.pointer)
        return _rejected(exc, doc)
    except Exception as exc:  # a bug must not drop the record: keep it as `internal`
        return _rejected(InternalError(f"{type(exc).__name__}: {exc}"), doc)


def _rejected(exc: PoisonError, doc: dict[str, Any] | None) -> Rejected:
    sender = doc.get("sender") if doc else None
    identifier = doc.get("identifier") if doc else None
    return Rejected(
        code=exc.code,
        message=exc.message,
        pointer=exc.pointer,
        sender=sender if isinstance(sender, str) else None,
        identifier=identifier if isinstance(identifier, str) else None,
        problems=exc.problems,
    )


def resolve_targets(
    doc: dict[str, Any], regions: RegionRegistry, h3_resolution: int = DEFAULT_H3_RESOLUTION
) -> Targets:
    """Region codes, H3 cells and categories of every area and info block (regions, geocodes,
    polygons, circles: :func:`streams.regions.resolve_targets`); raises at the bad field."""
    return resolve_areas(doc.get("info", ()), regions, h3_resolution=h3_resolution)


def _accept(
    doc: dict[str, Any],
    *,
    regions: RegionRegistry,
    partitions: int,
    state: LifecycleState | None,
    agency: Agency | None,
    h3_resolution: int,
    cancel_tasks: bool,
    now: datetime,
    reach: ReachCounter | None = None,
) -> Accepted | Duplicate:
    # Required by the schema: an alert never gets a status, type or scope Loa made up.
    msg_type, status, scope = doc["msgType"], doc["status"], doc["scope"]
    _check_scope(scope, status=status, msg_type=msg_type)
    infos = doc.get("info", [])
    # an info block without expires is in force until cancelled: then so is the alert
    open_ended = any("expires" not in i for i in infos)
    expires = [] if open_ended else [datetime.fromisoformat(i["expires"]) for i in infos]
    plan = (state if state is not None else LifecycleState()).plan(
        sender=doc["sender"],
        identifier=doc["identifier"],
        status=status,
        msg_type=msg_type,
        sent=doc["sent"],
        references=doc.get("references"),
        expires=expires,
        now=now,
        authority=_authority(agency) if agency is not None else None,
    )
    if plan.duplicate:
        return Duplicate(plan, doc["sender"], doc["identifier"])
    targeting = resolve_targets(doc, regions, h3_resolution)
    if agency is not None:
        authorize(
            agency,
            status=("/status", status),
            severities=[(f"/info/{i}/severity", info["severity"]) for i, info in enumerate(infos)],
            region_codes=targeting.pointed,
            cells=[("/info", cell) for cell in targeting.cells],
        )
    lifecycle = state or LifecycleState()
    alert = _accepted_alert(doc, plan, targeting, _priority(infos, lifecycle, plan), expires, now)
    if status in _DELIVERED_STATUSES and msg_type in ("Alert", "Update"):
        counted = reach(alert.targets, targeting.cells, status != "Actual") if reach else None
        found = warnings_for(
            status=status,
            msg_type=msg_type,
            targets=targeting,
            reach=counted,
            counted=reach is not None,
        )
        alert = replace(
            alert,
            reach=counted.to_doc() if counted is not None else None,
            warnings=tuple(w.to_doc() for w in found),
        )
    orders = _orders(alert, plan, lifecycle, targeting, partitions, cancel_tasks=cancel_tasks)
    return Accepted(alert=alert, orders=orders, plan=plan)


def _priority(infos: list[dict[str, Any]], lifecycle: LifecycleState, plan: Plan) -> Priority:
    """The most urgent info block's; a Cancel (or Ack, Error) has none and goes out at the
    priority of the alert it is about."""
    if infos:
        return most_urgent(priority_of(info["severity"], info["urgency"]) for info in infos)
    return Priority(lifecycle.priority(plan.lineage) or Priority.ROUTINE)


def _accepted_alert(
    doc: dict[str, Any],
    plan: Plan,
    targeting: Targets,
    priority: Priority,
    expires: list[datetime],
    now: datetime,
) -> AcceptedAlert:
    """The accepted record of ``doc`` (before its reach and warnings are counted)."""
    status = doc["status"]
    return AcceptedAlert(
        alert_id=plan.lineage,
        version=plan.version,
        message_id=plan.message_id,
        sender=doc["sender"],
        identifier=doc["identifier"],
        sent=doc["sent"],
        status=status,
        msg_type=doc["msgType"],
        priority=priority,
        targets=targeting.codes,
        test_only=status != "Actual",
        expires=max(expires).isoformat() if expires else None,
        infos=tuple(
            AlertInfo(
                language=info.get("language", "vi-VN"),
                event=info["event"],
                headline=info["headline"],
                severity=info["severity"],
                urgency=info["urgency"],
                description=info.get("description"),
                instruction=info.get("instruction"),
            )
            for info in doc.get("info", [])
        ),
        accepted_at=now.isoformat(),
        references=doc.get("references"),
        owner=plan.owner,
        cells=targeting.cells,
    )


def _orders(
    alert: AcceptedAlert,
    plan: Plan,
    lifecycle: LifecycleState,
    targeting: Targets,
    partitions: int,
    *,
    cancel_tasks: bool,
) -> tuple[FanoutOrder, ...]:
    """One fan-out order per partition, or none. A Cancel stops the lineage's fan-out (workers
    watch the accepted topic and their own order book) and, for Actual alerts when
    ``cancel_tasks``, tells those already served. Ack and Error never reach anyone."""
    msg_type = alert.msg_type
    kind = {"Alert": TaskKind.ALERT, "Update": TaskKind.UPDATE, "Cancel": TaskKind.CANCEL}.get(
        msg_type
    )
    if msg_type == "Cancel" and not (cancel_tasks and alert.status == "Actual"):
        kind = None
    if not alert.delivers or kind is None:
        return ()
    changed = msg_type != "Update" or told(alert) != lifecycle.told(plan.lineage)
    return tuple(
        FanoutOrder(
            alert_id=alert.alert_id,
            version=alert.version,
            kind=kind,
            priority=alert.priority,
            partition=p,
            targets=alert.targets,
            test_only=alert.test_only,
            cells=targeting.cells,
            categories=targeting.categories,
            expires=alert.expires,
            changed=changed,
        )
        for p in range(partitions)
    )


def _authority(agency: Agency) -> Authority:
    """The lineage-authority check of ``agency`` (:func:`authorize_change`) for the lifecycle."""

    def check(lineage: LineageView, msg_type: str) -> None:
        authorize_change(
            agency,
            lineage=lineage.lineage,
            owner=lineage.owner,
            codes=lineage.codes,
            cells=lineage.cells,
            msg_type=msg_type,
        )

    return check


#: Statuses and message types that reach someone (Draft, System, Ack, Error reach nobody).
_DELIVERED_STATUSES = frozenset({"Actual", "Exercise", "Test"})
_DELIVERED_TYPES = frozenset({"Alert", "Update", "Cancel"})


def _check_scope(scope: str, *, status: str, msg_type: str) -> None:
    """Loa delivers to the public of the targeted areas: it has no restricted or addressed
    audience, so a Restricted or Private message that would reach anyone is refused rather
    than sent to everyone in its areas."""
    if scope != "Public" and status in _DELIVERED_STATUSES and msg_type in _DELIVERED_TYPES:
        raise Unsupported(
            f"scope {scope}: Loa delivers only to the public of the targeted areas and would"
            f" reach everyone there; publish a {scope} {msg_type} through another channel",
            pointer="/scope",
        )


def rejection_record(
    rejected: Rejected | Duplicate,
    raw: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    now: datetime | None = None,
) -> bytes:
    """The value written to ``loa.alerts.rejected`` (``schemas/rejection.schema.json``).

    A duplicate is reported there too (code ``duplicate``, no ``errors``), so every inbound
    record has its fate on one of two topics: accepted, or rejected/duplicate. ``errors`` lists
    every fault found; the first is ``message``/``pointer``.
    """
    problems: tuple[Problem, ...] = ()
    if isinstance(rejected, Duplicate):
        code, message, pointer = (
            RejectionCode.DUPLICATE.value,
            f"already accepted as {rejected.plan.lineage} version {rejected.plan.version}",
            "",
        )
    else:
        code, message, pointer = rejected.code.value, rejected.message, rejected.pointer
        problems = rejected.all_problems
    sender, identifier = rejected.sender, rejected.identifier
    excerpt = (raw or b"")[:_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return orjson.dumps(
        {
            "code": code,
            "message": message,
            "pointer": pointer,
            "errors": [{"pointer": p.pointer, "message": p.message} for p in problems],
            "sender": sender,
            "identifier": identifier,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "size": len(raw or b""),
            "excerpt": excerpt,
            "rejected_at": (now or datetime.now(UTC)).isoformat(),
        }
    )
