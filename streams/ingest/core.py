"""The ingest decision: raw bytes in, one of accepted, duplicate or rejected out, never a raise.

Steps, in order (the first failure decides): size; parse (CAP 1.2 XML through the hardened
:mod:`streams.ingest.cap`, or Loa JSON: both become the same dict); schema; lifecycle (duplicate,
``references``, expiry); targets; outputs. The function is pure: the lifecycle state is read,
not written (the agent records an accepted message once its decision is on Kafka), and the
clock is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import InternalError, PoisonError, RejectionCode, TooLarge
from streams.ingest.agencies import Agency, AgencyRegistry, authorize, identify
from streams.ingest.cap import detect_format, json_pointer_to_xpath, parse_cap
from streams.ingest.json_alert import decode_json_alert, validate_json_alert
from streams.ingest.lifecycle import LifecycleState, Plan, told
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
) -> Decision:
    """Decide one inbound record. Any exception is turned into a rejection, never raised.

    ``agencies`` is the registry the sender must be in, signing the raw bytes (``headers``:
    ``loa-signature``, ``loa-key-id``; or, for CAP without them, an enveloped XML-DSig signature
    by a registered certificate, :mod:`streams.ingest.xmldsig`) unless ``require_signatures``
    is off, and whose rights
    (statuses, severity, jurisdiction) the alert must keep within. ``None`` skips the agency
    checks: only ``loa preview`` and unit tests of the other steps do that; the agent never.
    """
    doc: dict[str, Any] | None = None
    now = now or datetime.now(UTC)
    raw = raw or b""
    xml = False
    try:
        if len(raw) > max_bytes:
            raise TooLarge(f"record is {len(raw)} bytes, the limit is {max_bytes}")
        xml = detect_format(raw) == "xml"
        doc = parse_cap(raw, max_bytes=max_bytes) if xml else decode_json_alert(raw)
        validate_json_alert(doc)
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
        )
    except PoisonError as exc:
        if xml and exc.pointer and not exc.pointer.startswith("/alert"):
            # name the element the agency wrote, not Loa's JSON mapping of it
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
) -> Accepted | Duplicate:
    msg_type = doc.get("msgType", "Alert")
    status = doc.get("status", "Actual")
    infos = doc.get("info", [])
    expires = [datetime.fromisoformat(i["expires"]) for i in infos if "expires" in i]
    plan = (state if state is not None else LifecycleState()).plan(
        sender=doc["sender"],
        identifier=doc["identifier"],
        msg_type=msg_type,
        references=doc.get("references"),
        expires=expires,
        now=now,
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
    targets = targeting.codes
    lifecycle = state or LifecycleState()
    if infos:
        priority = most_urgent(priority_of(info["severity"], info["urgency"]) for info in infos)
    else:  # a Cancel (or Ack, Error) goes out at the priority of the alert it is about
        priority = Priority(lifecycle.priority(plan.lineage) or Priority.ROUTINE)
    alert = AcceptedAlert(
        alert_id=plan.lineage,
        version=plan.version,
        message_id=plan.message_id,
        sender=doc["sender"],
        identifier=doc["identifier"],
        sent=doc["sent"],
        status=status,
        msg_type=msg_type,
        priority=priority,
        targets=targets,
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
            for info in infos
        ),
        accepted_at=now.isoformat(),
        references=doc.get("references"),
    )
    orders: tuple[FanoutOrder, ...] = ()
    # A Cancel stops the lineage's fan-out (workers watch the accepted topic and their own
    # order book) and, for Actual alerts when ``cancel_tasks``, tells those already served.
    # Ack and Error never reach anyone.
    kind = {"Alert": TaskKind.ALERT, "Update": TaskKind.UPDATE, "Cancel": TaskKind.CANCEL}.get(
        msg_type
    )
    if msg_type == "Cancel" and not (cancel_tasks and status == "Actual"):
        kind = None
    if alert.delivers and kind is not None:
        changed = msg_type != "Update" or told(alert) != lifecycle.told(plan.lineage)
        orders = tuple(
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
                decided_at=now.timestamp(),
            )
            for p in range(partitions)
        )
    return Accepted(alert=alert, orders=orders, plan=plan)


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

    A duplicate is reported there too (code ``duplicate``), so every inbound record has its
    fate on one of two topics: accepted, or rejected/duplicate.
    """
    sender: str | None
    identifier: str | None
    if isinstance(rejected, Duplicate):
        code, message, pointer = (
            RejectionCode.DUPLICATE.value,
            f"already accepted as {rejected.plan.lineage} version {rejected.plan.version}",
            "",
        )
        sender, identifier = rejected.sender, rejected.identifier
    else:
        code, message, pointer = rejected.code.value, rejected.message, rejected.pointer
        sender, identifier = rejected.sender, rejected.identifier
    excerpt = (raw or b"")[:_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return orjson.dumps(
        {
            "code": code,
            "message": message,
            "pointer": pointer,
            "sender": sender,
            "identifier": identifier,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "size": len(raw or b""),
            "excerpt": excerpt,
            "rejected_at": (now or datetime.now(UTC)).isoformat(),
        }
    )
