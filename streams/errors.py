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
    │   ├── UnknownSender          code ``unknown_sender``: ``sender`` is not in the agency registry
    │   ├── BadSignature           code ``bad_signature``: no, bad or foreign signature or key id
    │   ├── OutOfJurisdiction      code ``out_of_jurisdiction``: a target outside the agency's area
    │   ├── StatusNotAllowed       code ``status_not_allowed``: a status the agency may not use
    │   ├── SeverityNotAllowed     code ``severity_not_allowed``: above the agency's top severity
    │   ├── Expired                code ``expired``: every ``info`` had expired on arrival
    │   ├── UnknownReference       code ``unknown_reference``: Update/Cancel/Ack/Error whose
    │   │                          ``references`` name no alert Loa has accepted
    │   ├── AlreadyCancelled       code ``already_cancelled``: an Update of a cancelled lineage
    │   ├── NotLineageOwner        code ``not_lineage_owner``: an Update/Cancel of a lineage the
    │   │                          sender neither started nor was granted a right over
    │   ├── StatusMismatch         code ``status_mismatch``: a reference (or re-publish) across
    │   │                          statuses (a Test or Exercise touching an Actual lineage)
    │   └── InternalError          code ``internal``: a bug met this input; kept, not dropped
    ├── RetriableError             the world is not ready (broker, directory): retry, never reject
    │   ├── DirectoryNotReady      a directory partition did not catch up in time
    │   ├── AgenciesNotReady       the agency registry did not catch up with its topic in time
    │   ├── HangingTransaction     a partition stays open after Loa aborted what its previous
    │   │                          owner left there (:mod:`streams.kafkaio.transactions`)
    │   ├── PartitionNotRestored   records of a partition whose state this worker has not
    │   │                          restored (yet): never claimed by the read, retried
    │   └── BrokerUnreachable      no broker answered at ``LOA_BOOTSTRAP_SERVERS`` in time
    ├── InvalidAgency              an agency registry record breaks ``schemas/agency.schema.json``
    │                              (the CLI refuses to load it; a worker drops that agency)
    ├── ConsoleRefused             the agency console refuses a request (``status`` and ``error``
    │                              of its HTTP answer, ``problems`` by draft field): poison, the
    │                              same request gets the same answer
    └── OperatorError              what a person at the CLI did or met; each maps to one line and
        │                          one exit code in :mod:`streams.cli.kit`
        ├── NotAuthorized          the broker refused this principal (ACLs, SASL credentials)
        ├── TopicMissing           a topic Loa needs does not exist (``loa topics create``)
        ├── BadInputFile           a file given to the CLI cannot be read or used (key, alert)
        ├── ConfigUnusable         the settings name a file that cannot be read (password, CA,
        │                          certificate) or a port that cannot be bound (metrics)
        └── NotFound               the alert, message id or channel asked for is not known

A poison error carries ``pointer``, the JSON pointer (or XPath for XML) of the field at fault,
so a rejection tells the agency where to look, and ``problems``: every fault found in the record
(a schema check reports all of them, up to a bound, so an agency fixes a file in one round; the
first is the one in ``message``/``pointer``). Messages quote input with :func:`quote` (JSON
string syntax), never with a Python repr.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "AgenciesNotReady",
    "AlreadyCancelled",
    "BadInputFile",
    "BadSignature",
    "BrokerUnreachable",
    "ConfigUnusable",
    "ConsoleRefused",
    "DirectoryNotReady",
    "Expired",
    "ForbiddenXml",
    "HangingTransaction",
    "InternalError",
    "InvalidAgency",
    "LoaError",
    "MalformedInput",
    "NotAuthorized",
    "NotFound",
    "NotLineageOwner",
    "OperatorError",
    "OutOfJurisdiction",
    "PartitionNotRestored",
    "PoisonError",
    "Problem",
    "RejectionCode",
    "RetriableError",
    "SchemaViolation",
    "SeverityNotAllowed",
    "StatusMismatch",
    "StatusNotAllowed",
    "TooLarge",
    "TopicMissing",
    "UnknownReference",
    "UnknownRegion",
    "UnknownSender",
    "Unsupported",
    "quote",
]

_QUOTE_LIMIT = 80


def quote(value: object, limit: int = _QUOTE_LIMIT) -> str:
    """``value`` as an agency reads it in a message: a JSON string or literal, cut at ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text


class Problem(NamedTuple):
    """One fault in a rejected record."""

    pointer: str
    """Where: a JSON pointer for Loa JSON, a 1-based XPath (``/alert/info[1]/area[2]``) for CAP."""
    message: str
    """What is wrong and what would be right, in the same convention as ``pointer``."""


class RejectionCode(StrEnum):
    """Machine-readable reason on ``loa.alerts.rejected``."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    FORBIDDEN_XML = "forbidden_xml"
    SCHEMA = "schema"
    UNKNOWN_REGION = "unknown_region"
    UNSUPPORTED = "unsupported"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    OUT_OF_JURISDICTION = "out_of_jurisdiction"
    STATUS_NOT_ALLOWED = "status_not_allowed"
    SEVERITY_NOT_ALLOWED = "severity_not_allowed"
    EXPIRED = "expired"
    UNKNOWN_REFERENCE = "unknown_reference"
    ALREADY_CANCELLED = "already_cancelled"
    NOT_LINEAGE_OWNER = "not_lineage_owner"
    STATUS_MISMATCH = "status_mismatch"
    INTERNAL = "internal"
    #: Not a rejection: a re-publish of an accepted alert, reported on the same topic so the
    #: publisher sees every record's fate in one place.
    DUPLICATE = "duplicate"


class LoaError(Exception):
    """Base of every error Loa raises on purpose."""

    retriable: bool = False


class PoisonError(LoaError):
    """The record can never be processed; it goes to the rejections topic with ``code``."""

    retriable = False
    code: RejectionCode = RejectionCode.INTERNAL

    def __init__(
        self, message: str, *, pointer: str = "", problems: tuple[Problem, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer
        #: Every fault found (the first is ``message``/``pointer``); empty means just that one.
        self.problems = problems


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


class UnknownSender(PoisonError):
    code = RejectionCode.UNKNOWN_SENDER


class BadSignature(PoisonError):
    code = RejectionCode.BAD_SIGNATURE


class OutOfJurisdiction(PoisonError):
    code = RejectionCode.OUT_OF_JURISDICTION


class StatusNotAllowed(PoisonError):
    code = RejectionCode.STATUS_NOT_ALLOWED


class SeverityNotAllowed(PoisonError):
    code = RejectionCode.SEVERITY_NOT_ALLOWED


class Expired(PoisonError):
    code = RejectionCode.EXPIRED


class UnknownReference(PoisonError):
    code = RejectionCode.UNKNOWN_REFERENCE


class AlreadyCancelled(PoisonError):
    code = RejectionCode.ALREADY_CANCELLED


class NotLineageOwner(PoisonError):
    code = RejectionCode.NOT_LINEAGE_OWNER


class StatusMismatch(PoisonError):
    code = RejectionCode.STATUS_MISMATCH


class InternalError(PoisonError):
    code = RejectionCode.INTERNAL


class RetriableError(LoaError):
    """A transient condition; the caller retries the same record later."""

    retriable = True


class DirectoryNotReady(RetriableError):
    """The directory partition an order needs has not caught up with the changes topic."""


class AgenciesNotReady(RetriableError):
    """The agency registry has not applied its topic up to the end offset asked for."""


class HangingTransaction(RetriableError):
    """A partition only one transactional id writes still has an open transaction after that
    id aborted what an earlier owner left there: another producer writes it."""


class PartitionNotRestored(RetriableError):
    """Records came for a partition whose state this worker has not restored (yet); the read
    never restores it itself (:mod:`streams.kafkaio.ownership` does): it waits and tries again."""


class InvalidAgency(LoaError):
    """An agency registry record is not valid; ``agency`` names it when it is known."""

    retriable = False

    def __init__(self, message: str, *, agency: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.agency = agency


class ConsoleRefused(LoaError):
    """A console API request refused: ``status`` (HTTP), ``error`` (the contract's code, e.g.
    ``csrf``, ``role``, ``second_person``, ``not_found``, ``invalid``) and, for 422, the
    ``problems`` as ``(field path, message)`` pairs (``streams.console``)."""

    retriable = False

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        problems: tuple[tuple[str, str], ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.problems = problems
        self.headers = headers or {}


class BrokerUnreachable(RetriableError):
    """No broker answered at the bootstrap servers (down, starting, wrong address or port)."""


class OperatorError(LoaError):
    """An error to show a person as one line; ``hint`` says what to do about it."""

    retriable = False
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint


class NotAuthorized(OperatorError):
    """The broker refused the request: the principal lacks an ACL or its credentials are bad."""

    hint = "check LOA_KAFKA_* credentials and the principal's ACLs (README: Operating Loa)"


class TopicMissing(OperatorError):
    """A topic Loa needs does not exist on the cluster."""

    hint = "run `loa init` (or check LOA_TOPIC_PREFIX and LOA_PARTITIONS)"


class BadInputFile(OperatorError):
    """A file given on the command line cannot be read or used (key file, alert file, CSV)."""

    hint = "check the file's path, permissions and format"


class NotFound(OperatorError):
    """The alert, message id or channel asked for is not known to the cluster."""

    hint = "check the id (`loa status` takes an alert id or any message id of its lineage)"


class ConfigUnusable(OperatorError):
    """The settings are well formed but name something this process cannot use: a secret, CA or
    certificate file it cannot read, a metrics port another process holds. Poison: the same
    configuration on the same host meets the same file or port; the message names it."""

    hint = "fix the file's path or permissions (the pod's user must read it), or the port"
