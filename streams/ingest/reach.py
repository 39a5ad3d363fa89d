"""Reach and warnings of an accepted decision: what the sending agency must see (pure).

Where it sits: at the end of :func:`streams.ingest.decide`, after the areas are resolved. The
decision carries who the message reaches, by channel (``reach``, counted by a
:data:`ReachCounter` over the directory census, :mod:`streams.directory.census`), and the
warnings an agency must read before it trusts the outcome:

``empty_audience``   an Actual Alert or Update that reaches nobody (the census counted every
                     partition and found no one in the area)
``located_only``     the alert has polygons or circles: a shape reaches only subscribers who
                     shared a location inside it, never residents by their home ward (no
                     maintained ward boundaries exist on the registries; docs/geography.md)
``partly_outside``   a shape lies partly outside Viet Nam: the part outside reaches nobody
``reach_unknown``    the census did not cover every directory partition (workers starting, or
                     none running): the reach is a lower bound and ``empty_audience`` cannot be
                     judged

``loa publish`` exits 8 for an accepted decision with warnings; the gateway and ``loa preview``
show them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streams.directory.census import Reach
from streams.regions import Targets

__all__ = ["Reach", "ReachCounter", "Warning", "warnings_for"]


#: ``(region codes, compacted H3 cells, test_only) -> Reach`` over the current census.
ReachCounter = Callable[[tuple[str, ...], tuple[str, ...], bool], Reach]


@dataclass(frozen=True, slots=True)
class Warning:
    code: str
    message: str
    pointer: str = ""

    def to_doc(self) -> dict[str, str]:
        doc = {"code": self.code, "message": self.message}
        if self.pointer:
            doc["pointer"] = self.pointer
        return doc


def warnings_for(
    *, status: str, msg_type: str, targets: Targets, reach: Reach | None, counted: bool = True
) -> list[Warning]:
    """The warnings of an accepted message that reaches people (Alert or Update).

    ``counted``: whether a census was asked at all (``loa preview`` and tests of other steps
    decide without one: then nothing is said about the reach).
    """
    out: list[Warning] = [
        Warning("partly_outside", message, pointer) for pointer, message in targets.outside
    ]
    if targets.cells:
        located = f" ({reach.located_only:,} of them)" if reach is not None else ""
        out.append(
            Warning(
                "located_only",
                "the polygons and circles reach only subscribers who shared a location inside"
                f" them{located}, not residents by their home ward; add the wards' region codes"
                " to reach everyone who lives there",
                "/info",
            )
        )
    if not counted:
        return out
    if reach is None or not reach.complete:
        covered = "no" if reach is None else f"{reach.partitions_counted} of {reach.partitions}"
        out.append(
            Warning(
                "reach_unknown",
                f"the directory census covers {covered} partitions: who this reaches is not"
                " known yet (is every worker running?)",
            )
        )
    elif reach.total == 0 and status == "Actual" and msg_type in ("Alert", "Update"):
        out.append(
            Warning(
                "empty_audience",
                "this Actual alert reaches nobody: no subscriber lives in its regions or shared a"
                " location in its shapes",
                "/info",
            )
        )
    return out
