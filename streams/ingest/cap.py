"""CAP 1.2 XML in, Loa's JSON alert shape out: the hardened front door of ingest for XML.

Where it sits: ``loa.alerts.inbound`` -> :func:`detect_format` -> (``"xml"``) :func:`parse_cap`
-> the same dict a JSON alert decodes to -> ``validate_json_alert`` and the rest of ingest. After
this module, ingest no longer knows which format an agency spoke.

Guarantee: :func:`parse_cap` either returns a dict whose keys are the CAP element names of
``schemas/alert.schema.json`` (only the elements present, never ``None``) or raises a
:class:`~streams.errors.PoisonError` subclass with an XPath-like ``pointer``
(``/alert/info[2]/area[1]/polygon[1]``); any other exception is a bug. It never reads a file,
opens a socket, loads a DTD or expands an entity, and its work is bounded by ``max_bytes`` (checked
before parsing) and ``max_depth`` (checked while parsing, so a 10 000-level document stops at the
first element too deep).

Hardening, and why each rule:

* ``defusedxml`` over the stdlib expat parser with ``forbid_dtd``, ``forbid_entities`` and
  ``forbid_external``: a DOCTYPE is refused as soon as expat reports it, so entity bombs
  ("billion laughs"), parameter entities and XXE (``SYSTEM "file:..."``/``"http:..."``) never get
  declared, let alone expanded or fetched -> :class:`~streams.errors.ForbiddenXml`.
* The bytes are decoded here, in Python, strictly, from the BOM or the XML declaration's
  ``encoding`` (UTF-8 by default), and the parser is fed text: any Python text codec works
  (ISO-8859-1, windows-1258, Shift_JIS, UTF-16 with or without BOM ...) and undecodable input is
  :class:`~streams.errors.MalformedInput`, never replacement characters. Escape "codecs"
  (``unicode_escape``, ``utf-7``, ``idna`` ...) are not character sets and are refused.
* Comments, CDATA and processing instructions (NWS feeds carry ``<?xml-stylesheet?>``) are allowed
  and carry no meaning: comments and PIs are dropped, CDATA is text.
* Elements of other namespaces (``ds:Signature`` of XML-DSig, vendor extensions) are ignored; CAP
  ``resource`` blocks are ignored (Loa sends text, it never dereferences a resource). An unknown
  element in the CAP namespace, a repeated single-valued element or an element inside a
  text-only one is :class:`~streams.errors.SchemaViolation` with its XPath.

Mapping rules: text is stripped of XML whitespace and put in Unicode NFC; ``polygon`` and
``circle`` also have inner whitespace runs collapsed to one space; ``sent``/``effective``/
``onset``/``expires`` pass through as strings with ``-00:00`` (CAP's "UTC, no local time")
rewritten to ``+00:00``; ``altitude`` and ``ceiling`` become numbers when they are finite decimals
(otherwise the string is kept and the schema rejects it); everything else required or typed is
left to ``validate_json_alert``.
"""

from __future__ import annotations

import codecs
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    NotSupportedError,
)
from defusedxml.ElementTree import DefusedXMLParser

from streams.errors import (
    ForbiddenXml,
    MalformedInput,
    SchemaViolation,
    TooLarge,
    Unsupported,
    quote,
)

__all__ = [
    "CAP_1_1_NAMESPACE",
    "CAP_NAMESPACE",
    "detect_format",
    "json_pointer_to_xpath",
    "parse_cap",
]

CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_1_1_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.1"
#: CAP 1.0's namespace as published, and the OASIS-style spelling some feeds use.
_CAP_1_0: Final = ("http://www.incident.com/cap/1.0", "urn:oasis:names:tc:emergency:cap:1.0")
#: CAP 1.1 values that CAP 1.2 dropped: no exact 1.2 equivalent, so such an alert is unsupported.
_CAP_1_1_ONLY: Final = {"certainty": frozenset({"Very Likely"})}
_XML_SPACE: Final = " \t\r\n"
_MAX_MESSAGE = 200

# Longest first: a UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# XML 1.0 appendix F: "<" or "<?" in a wide encoding without a BOM.
_WIDE_WITHOUT_BOM: Final = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
_DECLARATION = re.compile(
    rb"""[ \t\r\n]*<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(["'])[0-9.]+\1"""
    rb"""[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(["'])([A-Za-z][A-Za-z0-9._-]{0,39})\2"""
)
# Python text codecs that are escapes or transforms, not character sets: no agency sends them and
# they would let ``+ADw-`` or ``\\u003c`` become markup after a byte-level look at the payload.
_REFUSED_CODECS: Final = frozenset(
    {"utf-7", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"}
)


def detect_format(raw: bytes) -> Literal["xml", "json"]:
    """``"xml"`` if the first character after an optional BOM and whitespace is ``<``.

    UTF-8, UTF-16 and UTF-32 BOMs count, and so does a BOM-less UTF-16/32 ``<``. Everything
    else, empty input included, is ``"json"`` (the JSON decoder then says what is wrong).
    """
    head = raw[:256]
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            text = head[len(bom) :].decode(encoding, errors="ignore")
            return "xml" if text.lstrip(_XML_SPACE).startswith("<") else "json"
    for prefix, _ in _WIDE_WITHOUT_BOM:
        if head.startswith(prefix):
            return "xml"
    return "xml" if head.lstrip(_XML_SPACE.encode()).startswith(b"<") else "json"


def parse_cap(raw: bytes, *, max_bytes: int, max_depth: int = 32) -> dict[str, Any]:
    """Parse one CAP 1.2 (or exactly mappable CAP 1.1) ``<alert>`` into Loa's JSON alert shape
    (see the module docstring).

    Raises :class:`TooLarge` (over ``max_bytes``), :class:`ForbiddenXml` (DTD, entity, external
    reference, deeper than ``max_depth``), :class:`MalformedInput` (empty, undecodable, not
    well-formed, not a CAP ``alert``), :class:`Unsupported` (CAP 1.0; CAP 1.1 using a value
    CAP 1.2 dropped) or :class:`SchemaViolation` (CAP structure broken).
    """
    if len(raw) > max_bytes:
        raise TooLarge(f"record is {len(raw)} bytes, the limit is {max_bytes}")
    text = _decode(raw)
    if not text:
        raise MalformedInput("empty record")
    root = _parse(text, max_depth)
    namespace, name = _split(root.tag)
    if name == "alert" and namespace in _CAP_1_0:
        raise Unsupported(
            f"CAP 1.0 is not supported: publish CAP 1.2 (namespace {CAP_NAMESPACE}) or CAP 1.1",
            pointer="/alert",
        )
    if namespace not in (CAP_NAMESPACE, CAP_1_1_NAMESPACE) or name != "alert":
        raise MalformedInput(_not_cap(namespace, name), pointer=f"/{name}")
    doc = _map_block(root, "/alert", _ALERT, namespace)
    if namespace == CAP_1_1_NAMESPACE:
        _check_cap_1_1(doc)
    return doc


def _check_cap_1_1(doc: dict[str, Any]) -> None:
    """CAP 1.1 maps to 1.2 element for element; only values 1.2 dropped have no exact mapping."""
    infos = doc.get("info", ())
    for i, info in enumerate(infos):
        for element, dropped in _CAP_1_1_ONLY.items():
            value = info.get(element)
            if value in dropped:
                raise Unsupported(
                    f"/alert/info[{i + 1}]/{element}: CAP 1.1 value {quote(value)} has no exact"
                    f" CAP 1.2 equivalent; send one of the CAP 1.2 values instead",
                    pointer=f"/alert/info[{i + 1}]/{element}",
                )


def json_pointer_to_xpath(pointer: str) -> str:
    """The XPath-like location of a JSON pointer into a parsed CAP alert.

    ``/info/0/area/1/geocode/0`` -> ``/alert/info[1]/area[2]/geocode[1]``; ``""`` stays ``""``.
    Lets a rejection of CAP input name the element the agency wrote, not Loa's JSON mapping.
    """
    if not pointer:
        return ""
    parts = pointer.lstrip("/").split("/")
    out = ["", "alert"]
    for part in parts:
        if part.isdigit() and len(out) > 2:
            out[-1] = f"{out[-1]}[{int(part) + 1}]"
        else:
            out.append(part.replace("~1", "/").replace("~0", "~"))
    return "/".join(out)


# --- decoding ----------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    encoding, body = _sniff(raw)
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise MalformedInput(f"unknown encoding {quote(encoding)} in the XML declaration") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        raise MalformedInput(f"encoding {quote(encoding)} is not a character set")
    try:
        text = body.decode(info.name)
    except UnicodeDecodeError as exc:
        raise MalformedInput(
            f"not valid {info.name}: byte {exc.start}"
            f" (hex {exc.object[exc.start : exc.start + 4].hex(' ')})"
        ) from None
    except (UnicodeError, ValueError) as exc:  # a codec's own refusal (e.g. a truncated UTF-16)
        raise MalformedInput(f"not valid {info.name}: {_short(exc)}") from None
    # Expat refuses anything before the declaration; agencies' feeds do start with a newline.
    return text.lstrip(_XML_SPACE)


def _sniff(raw: bytes) -> tuple[str, bytes]:
    """The encoding (BOM first, then a BOM-less wide ``<``, then the declaration) and the body."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding, raw[len(bom) :]
    for prefix, encoding in _WIDE_WITHOUT_BOM:
        if raw.startswith(prefix):
            return encoding, raw
    match = _DECLARATION.match(raw, 0, 256)
    if match is None:
        return "utf-8", raw
    declared = match.group(3).decode("ascii")
    if declared.lower().replace("_", "-").startswith(("utf-16", "utf-32", "ucs-2", "ucs-4")):
        # Read as single bytes, so the document is not wide: the label is wrong and the bytes win
        # (strict XML calls this an error; decoding as UTF-8 still refuses anything undecodable).
        return "utf-8", raw
    return declared, raw


# --- parsing -----------------------------------------------------------------------------------


class _TooDeep(Exception):
    def __init__(self, pointer: str) -> None:
        super().__init__(pointer)
        self.pointer = pointer


class _DepthGuard:
    """A parser target that builds the tree and stops at the first element deeper than allowed.

    Checking while parsing (not after) keeps a 10 000-level document from being built at all.
    """

    def __init__(self, max_depth: int) -> None:
        self._builder = TreeBuilder()
        self._max_depth = max_depth
        self._path: list[str] = []
        self._seen: list[dict[str, int]] = [{}]

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        name = _split(tag)[1]
        seen = self._seen[-1]
        seen[name] = seen.get(name, 0) + 1
        self._path.append(f"{name}[{seen[name]}]")
        if len(self._path) > self._max_depth:
            raise _TooDeep("/" + "/".join(self._path))
        self._seen.append({})
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self._path.pop()
        self._seen.pop()
        return self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> Element:
        return self._builder.close()


def _parse(text: str, max_depth: int) -> Element:
    guard = _DepthGuard(max_depth)
    parser = DefusedXMLParser(
        target=guard, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        # Fed as text, expat parses it as UTF-8 whatever the declaration says: decoding is ours.
        parser.feed(text)
        root: Element = parser.close()
    except _TooDeep as exc:
        raise ForbiddenXml(
            f"XML nested deeper than {max_depth} elements", pointer=exc.pointer
        ) from None
    except DTDForbidden:
        raise ForbiddenXml("a DOCTYPE (DTD) is not allowed in CAP input", pointer="") from None
    except EntitiesForbidden:
        raise ForbiddenXml("entity declarations are not allowed in CAP input") from None
    except ExternalReferenceForbidden:
        raise ForbiddenXml("external references are not allowed in CAP input") from None
    except (NotSupportedError, DefusedXmlException) as exc:
        raise ForbiddenXml(f"forbidden XML construct: {_short(exc)}") from None
    except ParseError as exc:
        raise MalformedInput(f"not well-formed XML: {_short(exc)}") from None
    except (ValueError, UnicodeError) as exc:  # lone surrogates and the like, from pyexpat
        raise MalformedInput(f"not well-formed XML: {_short(exc)}") from None
    return root


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].rpartition("}")  # a namespace URI may hold "}"; a name never
        return namespace, name
    return "", tag


def _not_cap(namespace: str, name: str) -> str:
    if name != "alert":
        return f"the root element is <{name}>, a CAP message is an <alert>"
    if not namespace:
        return f"<alert> has no namespace, CAP 1.2 is {CAP_NAMESPACE}"
    return f"<alert> is in namespace {quote(namespace)}, CAP 1.2 is {CAP_NAMESPACE}"


def _short(exc: BaseException) -> str:
    message = str(exc)
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."


# --- mapping -----------------------------------------------------------------------------------
# A block spec maps each CAP child element to (kind, repeated). Kinds: text, time, number,
# a nested block (dict spec), or None for an element Loa reads past (``resource``).

_Spec: TypeAlias = dict[str, tuple["str | _Spec | None", bool]]

_PAIR: _Spec = {"valueName": ("text", False), "value": ("text", False)}
_AREA: _Spec = {
    "areaDesc": ("text", False),
    "polygon": ("shape", True),
    "circle": ("shape", True),
    "geocode": (_PAIR, True),
    "altitude": ("number", False),
    "ceiling": ("number", False),
}
_INFO: _Spec = {
    "language": ("text", False),
    "category": ("text", True),
    "event": ("text", False),
    "responseType": ("text", True),
    "urgency": ("text", False),
    "severity": ("text", False),
    "certainty": ("text", False),
    "audience": ("text", False),
    "eventCode": (_PAIR, True),
    "effective": ("time", False),
    "onset": ("time", False),
    "expires": ("time", False),
    "senderName": ("text", False),
    "headline": ("text", False),
    "description": ("text", False),
    "instruction": ("text", False),
    "web": ("text", False),
    "contact": ("text", False),
    "parameter": (_PAIR, True),
    "resource": (None, True),
    "area": (_AREA, True),
}
_ALERT: _Spec = {
    "identifier": ("text", False),
    "sender": ("text", False),
    "sent": ("time", False),
    "status": ("text", False),
    "msgType": ("text", False),
    "source": ("text", False),
    "scope": ("text", False),
    "restriction": ("text", False),
    "addresses": ("text", False),
    "code": ("text", True),
    "note": ("text", False),
    "references": ("text", False),
    "incidents": ("text", False),
    "info": (_INFO, True),
}

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SPACE_RUN = re.compile(r"[ \t\r\n]+")


def _map_block(elem: Element, path: str, spec: _Spec, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for child in elem:
        child_namespace, name = _split(child.tag)
        if child_namespace != namespace:
            continue  # XML-DSig signatures and extensions: not CAP content
        seen[name] = seen.get(name, 0) + 1
        entry = spec.get(name)
        if entry is None:
            raise SchemaViolation(
                f"{path}/{name}[{seen[name]}]: <{name}> is not a CAP 1.2 element here",
                pointer=f"{path}/{name}[{seen[name]}]",
            )
        kind, repeated = entry
        if repeated:
            child_path = f"{path}/{name}[{seen[name]}]"
        elif seen[name] > 1:
            raise SchemaViolation(
                f"{path}/{name}[{seen[name]}]: <{name}> may appear once, this is number"
                f" {seen[name]}",
                pointer=f"{path}/{name}[{seen[name]}]",
            )
        else:
            child_path = f"{path}/{name}"
        value: Any
        if kind is None:
            continue
        if isinstance(kind, dict):
            value = _map_block(child, child_path, kind, namespace)
        else:
            value = _LEAF[kind](_leaf_text(child, child_path))
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _leaf_text(elem: Element, path: str) -> str:
    if len(elem):
        name = _split(elem.tag)[1]
        raise SchemaViolation(f"{path}: <{name}> holds text, not elements", pointer=path)
    text = (elem.text or "").strip(_XML_SPACE)
    # windows-1258 spells Vietnamese tones as combining marks; NFC makes the same alert the same
    # text whatever charset the agency used (content hashes, SMS length, comparisons).
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _time(text: str) -> str:
    # CAP writes UTC as "-00:00"; ISO 8601 and the JSON schema spell it "+00:00".
    return text[:-6] + "+00:00" if text.endswith("-00:00") else text


def _number(text: str) -> float | int | str:
    if not _DECIMAL.fullmatch(text):
        return text  # the schema rejects it with its pointer
    value = float(text)
    if not math.isfinite(value):
        return text
    return int(text) if value.is_integer() and "." not in text and len(text) <= 15 else value


def _shape(text: str) -> str:
    return _SPACE_RUN.sub(" ", text)


_LEAF: Final[dict[str, Callable[[str], Any]]] = {
    "text": str,
    "time": _time,
    "number": _number,
    "shape": _shape,
}
