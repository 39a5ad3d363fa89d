"""Authorization: may this agency publish this alert, and change that lineage?

Where it sits: ingest, after the signature (:mod:`streams.ingest.signatures`) and before the
lifecycle. :func:`authorize` checks the alert's status, severities and (resolved) region codes
and H3 cells against the agency: ``status_not_allowed``, ``severity_not_allowed``,
``out_of_jurisdiction``, each with the pointer of the first offending field.
:func:`authorize_change` checks that the agency may Update or Cancel a lineage: it is the
lineage's owner, or its record grants it the right (``amends``) over the owner's alerts and the
lineage's whole area lies in its jurisdiction: ``not_lineage_owner`` otherwise (README "Who may
change an alert").

Guarantee: pure (no Kafka, no clock, no I/O); both return only when the agency is within its
rights, else raise a :class:`~streams.errors.PoisonError` subclass.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.errors import (
    NotLineageOwner,
    OutOfJurisdiction,
    SeverityNotAllowed,
    StatusNotAllowed,
    quote,
)
from streams.ingest.agencies import Agency

__all__ = [
    "Pointed",
    "authorize",
    "authorize_change",
]

#: ``(pointer, value)``: a value and the JSON pointer (or XPath) of the field it came from.
Pointed = tuple[str, str]


def authorize(
    agency: Agency,
    *,
    status: Pointed,
    severities: Iterable[Pointed],
    region_codes: Iterable[Pointed],
    cells: Iterable[Pointed] = (),
) -> None:
    """Return if ``agency`` may publish this; else raise at the first offending field.

    Checks the status, then each severity, then each region code (Loa codes, geocodes already
    resolved to codes), then each H3 cell of the polygons and circles (:meth:`Agency.covers_cell`).
    Each argument is ``(pointer, value)``. Raises :class:`StatusNotAllowed`,
    :class:`SeverityNotAllowed` or :class:`OutOfJurisdiction`.
    """
    pointer, value = status
    if value not in agency.allowed_statuses:
        allowed = ", ".join(agency.allowed_statuses) or "none"
        raise StatusNotAllowed(
            f"agency {quote(agency.id)} may not publish status {quote(value)} (allowed: {allowed})",
            pointer=pointer,
        )
    for pointer, value in severities:
        if not agency.allows_severity(value):
            raise SeverityNotAllowed(
                f"agency {quote(agency.id)} may not publish severity {quote(value)} "
                f"(its highest is {agency.max_severity})",
                pointer=pointer,
            )
    for pointer, value in region_codes:
        if not agency.covers(value):
            area = ", ".join(agency.jurisdiction) or "none"
            raise OutOfJurisdiction(
                f"{quote(value)} is outside the jurisdiction of agency {quote(agency.id)} ({area})",
                pointer=pointer,
            )
    for pointer, value in cells:
        if not agency.covers_cell(value):
            raise OutOfJurisdiction(
                f"the shape reaches H3 cell {value} outside the jurisdiction of agency "
                f"{quote(agency.id)}"
                + ("" if agency.jurisdiction_cells else " (it has no jurisdiction_cells)"),
                pointer=pointer,
            )


def authorize_change(
    agency: Agency,
    *,
    lineage: str,
    owner: str,
    codes: Iterable[str],
    cells: Iterable[str],
    msg_type: str,
    pointer: str = "/references",
) -> None:
    """Return if ``agency`` may send a ``msg_type`` (Update, Cancel) of ``lineage``; else raise
    :class:`NotLineageOwner` naming who owns it.

    A lineage belongs to its owner (the sender of its Alert). Another agency may change it only
    through a :class:`Grant` of its own record covering the owner and the message type, and
    only if every region code and cell the lineage has reached (``codes``, ``cells``: every
    version's area) lies in its jurisdiction, so a province never touches a national lineage.
    """
    if agency.id == owner:
        return
    grants = [g for g in agency.amends if g.covers(owner, msg_type)]
    base = (
        f"lineage {quote(lineage)} belongs to agency {quote(owner)}; agency {quote(agency.id)}"
        f" may not {msg_type} it"
    )
    if not grants:
        rights = "; ".join(g.describe() for g in agency.amends) or "none"
        raise NotLineageOwner(
            f"{base} (the registry grants it no right over {quote(owner)}'s alerts; its amends:"
            f" {rights})",
            pointer=pointer,
        )
    outside = [c for c in sorted(codes) if not agency.covers(c)]
    outside += [c for c in sorted(cells) if not agency.covers_cell(c)]
    if outside:
        area = ", ".join(agency.jurisdiction) or "none"
        raise NotLineageOwner(
            f"{base}: the lineage reaches {quote(outside[0])}"
            + (f" and {len(outside) - 1} more" if len(outside) > 1 else "")
            + f", outside its jurisdiction ({area})",
            pointer=pointer,
        )
