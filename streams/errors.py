"""Loa's exception tree. The agents route on the class, never on the message.

::

    LoaError                       base; ``retriable`` says what the caller does with it
    ├── PoisonError                the input can never succeed: reject it with ``code`` and go on
    │   ├── MalformedInput         code ``malformed``: not JSON, not UTF-8, empty, not an object
    │   ├── TooLarge               code ``too_large``: over ``LOA_MAX_ALERT_BYTES``
    │   ├── ForbiddenXml           code ``forbidden_xml``: CAP XML with a DTD, an entity or an
    │   │                          external reference, or nested deeper than the parser allows
    │   ├── SchemaViolation        code ``schema``: valid JSON that breaks ``schemas/``, or
    │   │                          well-formed CAP XML that breaks the CAP 1.2 structure
    │   ├── UnknownRegion          code ``unknown_region``: a target code not in the registry
    │   ├── Unsupported            code ``unsupported``: a feature this version does not handle
    │   └── InternalError          code ``internal``: a bug met this input; kept, not dropped
    └── RetriableError             the world is not ready (broker, directory): retry, never reject
        └── DirectoryNotReady      a directory partition did not catch up in time

A poison error carries ``pointer``, the JSON pointer (or XPath for XML) of the field at fault,
so a rejection tells the agency where to look.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DirectoryNotReady",
    "ForbiddenXml",
    "InternalError",
    "LoaError",
    "MalformedInput",
    "PoisonError",
    "RejectionCode",
    "RetriableError",
    "SchemaViolation",
    "TooLarge",
    "UnknownRegion",
    "Unsupported",
]


class RejectionCode(StrEnum):
    """Machine-readable reason on ``loa.alerts.rejected``."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    FORBIDDEN_XML = "forbidden_xml"
    SCHEMA = "schema"
    UNKNOWN_REGION = "unknown_region"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"


class LoaError(Exception):
    """Base of every error Loa raises on purpose."""

    retriable: bool = False


class PoisonError(LoaError):
    """The record can never be processed; it goes to the rejections topic with ``code``."""

    retriable = False
    code: RejectionCode = RejectionCode.INTERNAL

    def __init__(self, message: str, *, pointer: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


class MalformedInput(PoisonError):
    code = RejectionCode.MALFORMED


class TooLarge(PoisonError):
    code = RejectionCode.TOO_LARGE


class ForbiddenXml(PoisonError):
    """CAP XML using a construct Loa never parses (DTD, entities, external references, depth)."""

    code = RejectionCode.FORBIDDEN_XML


class SchemaViolation(PoisonError):
    code = RejectionCode.SCHEMA


class UnknownRegion(PoisonError):
    code = RejectionCode.UNKNOWN_REGION


class Unsupported(PoisonError):
    code = RejectionCode.UNSUPPORTED


class InternalError(PoisonError):
    code = RejectionCode.INTERNAL


class RetriableError(LoaError):
    """A transient condition; the caller retries the same record later."""

    retriable = True


class DirectoryNotReady(RetriableError):
    """The directory partition an order needs has not caught up with the changes topic."""
