"""The CLI's conventions in one place: exit codes, one-line errors, ``--debug`` and ``--json``.

Every ``loa`` command runs under :class:`LoaGroup`, which turns an expected failure into one
line on stderr (what happened, then what to do) and a documented exit code, so a script can
branch on the code and a person reads a sentence instead of a traceback. ``loa --debug CMD``
re-raises instead, for the traceback. Commands never catch client errors themselves: they raise
(or let aiokafka raise) and :func:`classify` maps the class, never the message text.

Exit codes (also in README "Alerts in", with what each means for ``loa publish``)::

    0   done
    1   the command ran and the answer is no (rejected alert, bad rows, not done in time)
    2   usage error (bad option or argument)
    3   not found (unknown alert, message id or channel)
    4   broker unreachable or timed out: retry later
    5   not authorized by the broker (ACLs, credentials)
    6   a topic Loa needs is missing or has other partitions than the settings: run ``loa init``
    7   a file given on the command line cannot be read or used (key, alert, directory file)
    8   done, with warnings a person must read (``loa publish``: accepted, and the decision
        carries warnings such as ``empty_audience``)
    70  unexpected error (a bug): rerun with ``--debug`` and report the traceback
    78  the configuration cannot be used here: a file it names (SASL password, CA, client
        certificate) cannot be read, the metrics port is taken, or the broker speaks another
        protocol than ``LOA_SECURITY_PROTOCOL`` (``EX_CONFIG`` of sysexits)

``--json`` (:func:`json_option`) is the one convention for machine output: the command prints
exactly one JSON document on stdout; on failure (usage errors too) it is ``{"error": {...}}``
with the same ``exit_code`` the process ends with.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import click
import orjson
from aiokafka import errors as kafka_errors

from streams.errors import (
    BadInputFile,
    BrokerUnreachable,
    ConfigUnusable,
    LoaError,
    NotAuthorized,
    NotFound,
    OperatorError,
    TopicMissing,
)
from streams.kafkaio.security import failures_explained, listener_mismatch

__all__ = ["ExitCode", "Failure", "LoaGroup", "classify", "emit_json", "json_option", "wants_json"]

F = TypeVar("F", bound=Callable[..., Any])

_JSON_KEY = "loa.json"
_DEBUG_KEY = "loa.debug"


class ExitCode(IntEnum):
    """Process exit codes of ``loa``; the table is in this module's docstring."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    NOT_AUTHORIZED = 5
    TOPIC_MISSING = 6
    BAD_INPUT = 7
    WARNINGS = 8
    INTERNAL = 70
    CONFIG = 78


@dataclass(frozen=True, slots=True)
class Failure:
    """An exception as the CLI reports it."""

    code: ExitCode
    kind: str
    message: str
    hint: str

    def line(self) -> str:
        return f"error: {self.message}" + (f" ({self.hint})" if self.hint else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "kind": self.kind,
                "message": self.message,
                "hint": self.hint,
                "exit_code": int(self.code),
            }
        }


_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.SaslAuthenticationFailed,
)
_UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.KafkaTimeoutError,
    ConnectionError,
    TimeoutError,
)

_OPERATOR_CODES: dict[type[OperatorError], ExitCode] = {
    NotFound: ExitCode.NOT_FOUND,
    NotAuthorized: ExitCode.NOT_AUTHORIZED,
    TopicMissing: ExitCode.TOPIC_MISSING,
    BadInputFile: ExitCode.BAD_INPUT,
    ConfigUnusable: ExitCode.CONFIG,
}


def classify(exc: BaseException, *, bootstrap: str = "") -> Failure:
    """The exit code and the one line for ``exc`` (by class; unknown classes are bugs)."""
    where = bootstrap or "LOA_BOOTSTRAP_SERVERS"
    if isinstance(exc, OperatorError):
        code = next(
            (c for cls, c in _OPERATOR_CODES.items() if isinstance(exc, cls)), ExitCode.FAILED
        )
        return Failure(code, type(exc).__name__, exc.message, exc.hint)
    if isinstance(exc, _AUTH_ERRORS):
        return Failure(
            ExitCode.NOT_AUTHORIZED,
            "NotAuthorized",
            f"the broker refused the request ({type(exc).__name__})",
            NotAuthorized.hint,
        )
    if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
        return Failure(
            ExitCode.TOPIC_MISSING,
            "TopicMissing",
            "a topic Loa needs is missing",
            TopicMissing.hint,
        )
    if isinstance(exc, (BrokerUnreachable, *_UNREACHABLE_ERRORS)):
        return Failure(
            ExitCode.UNREACHABLE,
            "BrokerUnreachable",
            f"no Kafka broker answered at {where}",
            "start the broker (`loa kafka start`) or set LOA_BOOTSTRAP_SERVERS; then retry",
        )
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return Failure(
            ExitCode.BAD_INPUT,
            "BadInputFile",
            f"cannot read {exc.filename}: {exc.strerror}",
            BadInputFile.hint,
        )
    if isinstance(exc, LoaError):
        return Failure(ExitCode.FAILED, type(exc).__name__, str(exc), "")
    return Failure(
        ExitCode.INTERNAL,
        "InternalError",
        f"unexpected {type(exc).__name__}: {exc}",
        "a bug: rerun with `loa --debug ...` and report the traceback",
    )


class LoaGroup(click.Group):
    """The root group: runs a command and turns what it raises into a line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        with failures_explained() as explain:
            try:
                return super().invoke(ctx)
            except click.ClickException as exc:
                if ctx.meta.get(_JSON_KEY) or "--json" in sys.argv[1:]:
                    # a usage error still gives the one JSON document a script parses
                    emit_json(
                        Failure(
                            ExitCode(exc.exit_code), type(exc).__name__, exc.format_message(), ""
                        ).as_json()
                    )
                raise
            except (click.exceptions.Exit, click.Abort, SystemExit):
                raise
            except Exception as exc:
                if ctx.meta.get(_DEBUG_KEY):
                    raise
                self._report(ctx, exc, explain(exc))

    @staticmethod
    def _report(ctx: click.Context, exc: Exception, cause: str | None) -> None:
        """One line and the exit code; ``cause``: what aiokafka only logged (TLS, SASL, ACL)."""
        failure = classify(exc, bootstrap=_bootstrap())
        if cause:
            failure = dataclasses.replace(failure, message=cause, hint="")
        elif failure.code == ExitCode.UNREACHABLE:
            failure = _mismatch(ctx, failure)
        if ctx.meta.get(_JSON_KEY):
            emit_json(failure.as_json())
        click.echo(failure.line(), err=True)
        sys.exit(int(failure.code))


#: ``ctx.meta`` key of the settings the running command loaded
#: (:func:`streams.cli.context.command_settings`).
SETTINGS_KEY = "loa.settings"


def _mismatch(ctx: click.Context, failure: Failure) -> Failure:
    """ "No broker answered" becomes "it speaks another protocol" when a probe shows that."""
    settings = ctx.meta.get(SETTINGS_KEY)
    if settings is None:
        return failure
    line = listener_mismatch(settings)
    if line is None:
        return failure
    hint = "set LOA_SECURITY_PROTOCOL to the listener's protocol, or use the listener it names"
    # a configuration fault, not an outage: retrying the same settings cannot help
    return Failure(ExitCode.CONFIG, "ConfigUnusable", line, hint)


def _bootstrap() -> str:
    return os.environ.get("LOA_BOOTSTRAP_SERVERS", "")


def _flag(key: str, *decls: str, help: str, **extra: Any) -> Callable[[F], F]:
    """A boolean flag whose value is also kept in ``ctx.meta[key]``, where :class:`LoaGroup`
    (root context) and :func:`wants_json` read it."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.meta[key] = value
        return value

    return click.option(*decls, is_flag=True, callback=remember, help=help, **extra)


#: ``--debug``: show tracebacks instead of one-line errors (root group only).
debug_option = _flag(
    _DEBUG_KEY,
    "--debug",
    expose_value=False,
    is_eager=True,
    help="Show the full traceback of an error instead of one line.",
)

#: ``--json``: print one JSON document on stdout instead of text (the shared convention;
#: the command gets it as ``as_json``).
json_option = _flag(
    _JSON_KEY,
    "--json",
    "as_json",
    help='Print one JSON document on stdout (errors too: {"error": ...}).',
)


def wants_json() -> bool:
    """Whether the running command was given ``--json``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON_KEY))


def emit_json(doc: Any) -> None:
    """Print ``doc`` as one line of JSON on stdout (keys sorted, so output is diffable)."""
    click.echo(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode())
