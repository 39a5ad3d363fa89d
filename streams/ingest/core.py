"""The ingest decision: raw bytes in, :class:`Accepted` or :class:`Rejected` out, never a raise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import InternalError, PoisonError, RejectionCode, TooLarge, Unsupported
from streams.ingest.json_alert import decode_json_alert, validate_json_alert
from streams.records import (
    AcceptedAlert,
    AlertInfo,
    FanoutOrder,
    TaskKind,
    most_urgent,
    priority_of,
)
from streams.regions import RegionRegistry

__all__ = ["Accepted", "Decision", "Rejected", "decide", "rejection_record"]

_EXCERPT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Accepted:
    alert: AcceptedAlert
    orders: tuple[FanoutOrder, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectionCode
    message: str
    pointer: str
    sender: str | None
    identifier: str | None


Decision = Accepted | Rejected


def decide(
    raw: bytes | None,
    *,
    regions: RegionRegistry,
    partitions: int,
    max_bytes: int,
    now: datetime | None = None,
) -> Decision:
    """Decide one inbound record. Any exception is turned into a rejection, never raised."""
    doc: dict[str, Any] | None = None
    try:
        if raw is not None and len(raw) > max_bytes:
            raise TooLarge(f"record is {len(raw)} bytes, the limit is {max_bytes}")
        doc = decode_json_alert(raw or b"")
        validate_json_alert(doc)
        return _accept(doc, regions=regions, partitions=partitions, now=now)
    except PoisonError as exc:
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


def _accept(
    doc: dict[str, Any], *, regions: RegionRegistry, partitions: int, now: datetime | None
) -> Accepted:
    msg_type = doc.get("msgType", "Alert")
    if msg_type != "Alert":
        raise Unsupported(f"msgType {msg_type!r} is not handled yet", pointer="/msgType")
    status = doc.get("status", "Actual")
    infos = doc["info"]
    targets: list[str] = []
    pointed: list[tuple[str, str]] = []
    for i, info in enumerate(infos):
        for j, area in enumerate(info["area"]):
            for k, code in enumerate(area.get("regions", ())):
                pointed.append((f"/info/{i}/area/{j}/regions/{k}", code))
                if code not in targets:
                    targets.append(code)
    regions.ward_mask(pointed)  # raises UnknownRegion at the offending field
    priority = most_urgent(priority_of(info["severity"], info["urgency"]) for info in infos)
    expires = [info["expires"] for info in infos if "expires" in info]
    alert = AcceptedAlert(
        alert_id=f"{doc['sender']}/{doc['identifier']}",
        version=1,
        sender=doc["sender"],
        identifier=doc["identifier"],
        sent=doc["sent"],
        status=status,
        msg_type=msg_type,
        priority=priority,
        targets=tuple(targets),
        test_only=status != "Actual",
        expires=min(expires) if expires else None,
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
        accepted_at=(now or datetime.now(UTC)).isoformat(),
    )
    orders: tuple[FanoutOrder, ...] = ()
    if alert.delivers:
        orders = tuple(
            FanoutOrder(
                alert_id=alert.alert_id,
                version=alert.version,
                kind=TaskKind.ALERT,
                priority=alert.priority,
                partition=p,
                targets=alert.targets,
                test_only=alert.test_only,
            )
            for p in range(partitions)
        )
    return Accepted(alert=alert, orders=orders)


def rejection_record(
    rejected: Rejected,
    raw: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    now: datetime | None = None,
) -> bytes:
    """The value written to ``loa.alerts.rejected`` (``schemas/rejection.schema.json``)."""
    excerpt = (raw or b"")[:_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return orjson.dumps(
        {
            "code": rejected.code.value,
            "message": rejected.message,
            "pointer": rejected.pointer,
            "sender": rejected.sender,
            "identifier": rejected.identifier,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "size": len(raw or b""),
            "excerpt": excerpt,
            "rejected_at": (now or datetime.now(UTC)).isoformat(),
        }
    )
