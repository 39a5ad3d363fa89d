"""Drafts: what the browser sends, the checks a draft must pass, and the Loa JSON alert it makes.

Where it sits: the console's pure core, between the browser and ingest. :func:`parse_draft`
reads the contract's Draft and refuses, field by field, anything an alert must not carry
(oversized text, control or bidi characters, markup and XML entities, unknown codes, shapes
that are no shape, radii of 0 or of a continent, an expiry in the past). :func:`build_alert`
makes the alert ingest will judge (``schemas/alert.schema.json``: one ``info`` per language,
each with the same area), and :func:`field_of` maps ingest's JSON pointers back to the draft's
field paths so each of ingest's problems is shown at its field.

No I/O, no clock but the one passed in.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from streams.console.regions import names
from streams.regions import RegionRegistry

__all__ = [
    "DRAFT_STATES",
    "Circle",
    "Draft",
    "DraftProblems",
    "InfoText",
    "build_alert",
    "field_of",
    "parse_draft",
]

STATUSES = ("Actual", "Exercise", "Test")
MSG_TYPES = ("Alert", "Update", "Cancel")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
CATEGORIES = (
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
    "CBRNE", "Other",
)  # fmt: skip
LANGUAGES = ("vi-VN", "en-US")
DRAFT_STATES = ("draft", "awaiting_approval", "returned", "sent")
#: Vietnam's time: the ``sent`` of an alert the console makes.
ICT = timezone(timedelta(hours=7))

LIMITS = {"event": 256, "headline": 512, "description": 8192, "instruction": 8192}
MAX_REGIONS = 4096
MAX_SHAPES = 64
MAX_POINTS = 1000
#: A circle larger than this is a mistake (Viet Nam is 1,650 km long): target provinces.
MAX_RADIUS_KM = 500.0
MAX_EXPIRY = timedelta(days=30)
_REGION = re.compile(r"VN(-\d{2}(-\d{5})?)?")
_REFERENCE = re.compile(
    r"[^\s,<&]+,[^\s,<&]+,\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)"
)
#: Markup and entity references: alert text reaches chat apps, push and SMS as plain text.
_MARKUP = re.compile(r"[<>]|&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class DraftProblems(ValueError):
    """The draft breaks rules: ``problems`` as ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class InfoText:
    language: str
    headline: str
    description: str = ""
    instruction: str = ""


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class Draft:
    """A parsed, valid draft (the contract's Draft)."""

    status: str
    msg_type: str
    event: str
    urgency: str
    severity: str
    certainty: str
    category: tuple[str, ...]
    expires: str
    infos: tuple[InfoText, ...]
    regions: tuple[str, ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[Circle, ...] = ()
    references: tuple[str, ...] = field(default=())

    def to_doc(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "msg_type": self.msg_type,
            "references": list(self.references),
            "event": self.event,
            "urgency": self.urgency,
            "severity": self.severity,
            "certainty": self.certainty,
            "category": list(self.category),
            "expires": self.expires,
            "infos": [
                {
                    "language": i.language,
                    "headline": i.headline,
                    "description": i.description,
                    "instruction": i.instruction,
                }
                for i in self.infos
            ],
            "areas": {
                "regions": list(self.regions),
                "polygons": [[list(p) for p in ring] for ring in self.polygons],
                "circles": [
                    {"lat": c.lat, "lon": c.lon, "radius_km": c.radius_km} for c in self.circles
                ],
            },
        }


class _Reader:
    """Collects every problem of one draft (the author fixes them in one round)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def choice(self, key: str, options: Sequence[str], default: str | None = None) -> str:
        value = self.doc.get(key, default)
        if value not in options:
            self.fail(key, f"one of {', '.join(options)}")
            return options[0]
        return str(value)

    def text(self, path: str, value: object, limit: int, *, required: bool, lines: bool) -> str:
        if value is None or value == "":
            if required:
                self.fail(path, "required")
            return ""
        if not isinstance(value, str):
            self.fail(path, "must be text")
            return ""
        problem = text_problem(value, limit, lines=lines)
        if problem:
            self.fail(path, problem)
        return value.strip()


def text_problem(value: str, limit: int, *, lines: bool) -> str | None:
    """Why ``value`` cannot be alert text, or None."""
    if len(value) > limit:
        return f"at most {limit} characters (this has {len(value)})"
    if not value.strip():
        return "required"
    for ch in value:
        if ch in _BIDI or (unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch != "\n"):
            return f"contains a control character (U+{ord(ch):04X})"
        if ch == "\n" and not lines:
            return "one line only"
    if _MARKUP.search(value):
        return "no markup: < > and entities such as &amp; are not allowed in alert text"
    return None


def parse_draft(
    doc: object, regions: RegionRegistry, now: datetime, *, references: Sequence[str] = ()
) -> Draft:
    """The Draft in ``doc``; :class:`DraftProblems` with every problem found.

    ``references`` (an Update's or Cancel's, set by the server) replace what the browser sent.
    """
    if not isinstance(doc, Mapping):
        raise DraftProblems([("", "a draft is a JSON object")])
    r = _Reader(doc)
    status = r.choice("status", STATUSES)
    msg_type = r.choice("msg_type", MSG_TYPES, "Alert")
    event = r.text("event", doc.get("event"), LIMITS["event"], required=True, lines=False)
    urgency = r.choice("urgency", URGENCIES)
    severity = r.choice("severity", SEVERITIES)
    certainty = r.choice("certainty", CERTAINTIES)
    category = _categories(r, doc.get("category"))
    expires = _expires(r, doc.get("expires"), now)
    infos = _infos(r, doc.get("infos"))
    areas = doc.get("areas")
    if not isinstance(areas, Mapping):
        r.fail("areas", "choose at least one province, ward, polygon or circle")
        areas = {}
    codes = _regions(r, areas.get("regions", []), regions)
    polygons = _polygons(r, areas.get("polygons", []))
    circles = _circles(r, areas.get("circles", []))
    if not (codes or polygons or circles) and not any(p.startswith("areas") for p, _ in r.problems):
        r.fail("areas", "choose at least one province, ward, polygon or circle")
    refs = tuple(references)
    if msg_type in ("Update", "Cancel") and not refs:
        r.fail("msg_type", "an Update or Cancel is made from a sent alert's page")
    if msg_type == "Alert" and refs:
        r.fail("msg_type", "this draft updates or cancels a sent alert")
    if r.problems:
        raise DraftProblems(r.problems)
    return Draft(
        status, msg_type, event, urgency, severity, certainty, category, expires, infos,
        codes, polygons, circles, refs,
    )  # fmt: skip


def _categories(r: _Reader, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > len(CATEGORIES):
        r.fail("category", "choose one or more categories")
        return ()
    for i, item in enumerate(value):
        if item not in CATEGORIES:
            r.fail(f"category[{i}]", f"one of {', '.join(CATEGORIES)}")
    return tuple(dict.fromkeys(str(v) for v in value))


def _expires(r: _Reader, value: object, now: datetime) -> str:
    if not isinstance(value, str) or len(value) > 40:
        r.fail("expires", "required: a date and time with its offset (2026-12-07T06:00:00+07:00)")
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        r.fail("expires", "not a date and time (2026-12-07T06:00:00+07:00)")
        return ""
    if when.tzinfo is None:
        r.fail("expires", "give the time zone offset (+07:00)")
        return ""
    if when <= now:
        r.fail("expires", "is in the past: an alert must still be in force when it is sent")
    elif when - now > MAX_EXPIRY:
        r.fail("expires", f"at most {MAX_EXPIRY.days} days ahead")
    return when.isoformat(timespec="seconds")


def _infos(r: _Reader, value: object) -> tuple[InfoText, ...]:
    if not isinstance(value, list) or not value:
        r.fail("infos", "write the alert in at least one language")
        return ()
    if len(value) > len(LANGUAGES):
        r.fail("infos", f"one block per language ({', '.join(LANGUAGES)})")
        return ()
    infos: list[InfoText] = []
    seen: set[str] = set()
    for i, block in enumerate(value):
        path = f"infos[{i}]"
        if not isinstance(block, Mapping):
            r.fail(path, "must be an object")
            continue
        language = block.get("language")
        if language not in LANGUAGES or language in seen:
            r.fail(f"{path}.language", f"one of {', '.join(LANGUAGES)}, each once")
            language = LANGUAGES[0]
        seen.add(str(language))
        headline = r.text(f"{path}.headline", block.get("headline"), LIMITS["headline"],
                          required=True, lines=False)  # fmt: skip
        description = r.text(f"{path}.description", block.get("description"),
                             LIMITS["description"], required=False, lines=True)  # fmt: skip
        instruction = r.text(f"{path}.instruction", block.get("instruction"),
                             LIMITS["instruction"], required=False, lines=True)  # fmt: skip
        infos.append(InfoText(str(language), headline, description, instruction))
    return tuple(infos)


def _regions(r: _Reader, value: object, regions: RegionRegistry) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_REGIONS:
        r.fail("areas.regions", f"a list of at most {MAX_REGIONS} region codes")
        return ()
    codes: list[str] = []
    for i, code in enumerate(value):
        if not isinstance(code, str) or not _REGION.fullmatch(code):
            r.fail(f"areas.regions[{i}]", "not a region code (VN-51 or VN-51-21001)")
        elif not regions.is_known(code):
            r.fail(f"areas.regions[{i}]", f"{code} is not a current province or ward")
        else:
            codes.append(code)
    return tuple(dict.fromkeys(codes))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _point(value: object) -> tuple[float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    lat, lon = _number(value[0]), _number(value[1])
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def _polygons(r: _Reader, value: object) -> tuple[tuple[tuple[float, float], ...], ...]:
    if not isinstance(value, list) or len(value) > MAX_SHAPES:
        r.fail("areas.polygons", f"a list of at most {MAX_SHAPES} polygons")
        return ()
    rings = []
    for i, ring in enumerate(value):
        path = f"areas.polygons[{i}]"
        if not isinstance(ring, list) or not 3 <= len(ring) <= MAX_POINTS:
            r.fail(path, f"a polygon has 3 to {MAX_POINTS} points [lat, lon]")
            continue
        points = [_point(p) for p in ring]
        if any(p is None for p in points):
            r.fail(path, "every point is [lat, lon] in degrees")
            continue
        closed = [p for p in points if p is not None]
        if closed[0] != closed[-1]:
            closed.append(closed[0])
        if len(set(closed)) < 3:
            r.fail(path, "a polygon encloses an area")
            continue
        rings.append(tuple(closed))
    return tuple(rings)


def _circles(r: _Reader, value: object) -> tuple[Circle, ...]:
    if not isinstance(value, list) or len(value) > MAX_SHAPES:
        r.fail("areas.circles", f"a list of at most {MAX_SHAPES} circles")
        return ()
    circles = []
    for i, item in enumerate(value):
        path = f"areas.circles[{i}]"
        if not isinstance(item, Mapping):
            r.fail(path, "a circle is {lat, lon, radius_km}")
            continue
        centre = _point([item.get("lat"), item.get("lon")])
        radius = _number(item.get("radius_km"))
        if centre is None:
            r.fail(path, "the centre is lat, lon in degrees")
        elif radius is None or not 0 < radius <= MAX_RADIUS_KM:
            r.fail(f"{path}.radius_km", f"a radius over 0 and at most {MAX_RADIUS_KM:g} km")
        else:
            circles.append(Circle(centre[0], centre[1], radius))
    return tuple(circles)


def _area_description(draft: Draft, regions: RegionRegistry) -> str:
    names = [region_name(code, regions) for code in draft.regions[:20]]
    shapes = len(draft.polygons) + len(draft.circles)
    if shapes:
        names.append(f"{shapes} vùng trên bản đồ (map shapes)")
    text = ", ".join(names) or "-"
    return text[:1000]


def region_name(code: str, regions: RegionRegistry) -> str:
    """The official name of a province or ward code (the code itself if unnamed)."""
    return names(regions).get(code, code)


def build_alert(
    draft: Draft, *, identifier: str, sender: str, sent: datetime, regions: RegionRegistry
) -> dict[str, Any]:
    """The Loa JSON alert a draft makes (what is signed and sent)."""
    area: dict[str, Any] = {"areaDesc": _area_description(draft, regions)}
    if draft.regions:
        area["regions"] = list(draft.regions)
    if draft.polygons:
        area["polygon"] = [" ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in ring)
                           for ring in draft.polygons]  # fmt: skip
    if draft.circles:
        area["circle"] = [f"{c.lat:.6f},{c.lon:.6f} {c.radius_km:g}" for c in draft.circles]
    infos = []
    for text in draft.infos:
        info: dict[str, Any] = {
            "language": text.language,
            "category": list(draft.category),
            "event": draft.event,
            "urgency": draft.urgency,
            "severity": draft.severity,
            "certainty": draft.certainty,
            "headline": text.headline,
            "expires": draft.expires,
            "area": [area],
        }
        if text.description:
            info["description"] = text.description
        if text.instruction:
            info["instruction"] = text.instruction
        infos.append(info)
    doc: dict[str, Any] = {
        "identifier": identifier,
        "sender": sender,
        "sent": sent.astimezone(ICT).isoformat(timespec="seconds"),
        "status": draft.status,
        "msgType": draft.msg_type,
        "scope": "Public",
        "info": infos,
    }
    if draft.references:
        doc["references"] = " ".join(draft.references)
    return doc


_INFO_FIELDS = {
    "event": "event", "urgency": "urgency", "severity": "severity", "certainty": "certainty",
    "category": "category", "expires": "expires", "effective": "expires", "onset": "expires",
}  # fmt: skip
_SHAPES = {"regions": "areas.regions", "polygon": "areas.polygons", "circle": "areas.circles"}
_TOP = {"status": "status", "msgType": "msg_type", "references": "references", "info": "infos"}


def field_of(pointer: str) -> str:
    """The draft field path of one of ingest's JSON pointers into the alert
    :func:`build_alert` made (``/info/1/headline`` -> ``infos[1].headline``); ``""`` for the
    alert as a whole (identifier, sender, sent: the console's own fields)."""
    parts = [p for p in pointer.split("/") if p]
    if not parts:
        return ""
    if parts == ["info"]:
        # ingest checks the cells of every shape together and points at /info: the areas
        # (the console writes one area into every info block, so it is always about them)
        return "areas"
    if parts[0] != "info":
        return _TOP.get(parts[0], "")
    if len(parts) < 3:
        return "infos" if len(parts) < 2 else f"infos[{parts[1]}]"
    info, name = parts[1], parts[2]
    if name in _INFO_FIELDS:
        return _INFO_FIELDS[name]
    if name in ("headline", "description", "instruction", "language"):
        return f"infos[{info}].{name}"
    if name == "area":
        # /info/i/area/0/<kind>/<k>: every info carries the same one area
        if len(parts) >= 5 and parts[4] in _SHAPES:
            path = _SHAPES[parts[4]]
            return f"{path}[{parts[5]}]" if len(parts) >= 6 and parts[5].isdigit() else path
        return "areas"
    return f"infos[{info}]"
