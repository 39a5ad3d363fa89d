"""Log formats of the worker and CLI (``LOA_LOG_FORMAT``): ``text`` for people, ``json`` for
log shippers.

In ``json`` every record is one JSON object on one line: ``ts`` (ISO 8601 UTC), ``level``,
``logger``, ``msg`` (the formatted message), ``exc`` when there is a traceback, plus the
``key=value`` tokens of Loa's decision lines (``decision=accepted alert=... priority=...``)
and of the gateway's access lines (``access=POST path=... status=...``) as fields (the
standard keys above win), so "one line per alert decision" can be filtered on ``decision``
without parsing.

What an on-call engineer reads (issue 20), in both formats, worker and CLI alike:

* **Repeats are counted, not repeated.** A WARNING or ERROR whose message template repeats
  within :data:`REPEAT_WINDOW_S` is written once; the next one after the window carries the
  count (``... (2,311 times in the last 60 s)``), so a broker outage costs a line a minute per
  kind of failure, not hundreds a second. INFO lines (one per alert decision) are never held.
* **No per-call lines from libraries**: aiokafka (coordinator discovery, subscriptions, joins)
  and httpx/httpcore (one line per provider call) log at WARNING and above unless
  ``LOA_LOG_LEVEL=DEBUG``. Faust's start and stop lines stay.
* **No false ERROR at start**: aiokafka's "Topic <app>-__assignor-__leader not found" (Faust
  creates that topic itself right after) is dropped, with Faust's matching warning.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "JsonFormatter",
    "KnownNoise",
    "RepeatLimiter",
    "configure",
    "decision_fields",
    "quiet_libraries",
    "worker_logging_config",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_FIELD = re.compile(r"([a-z_]+)=(\S*)")


def decision_fields(message: str) -> dict[str, str]:
    """The ``key=value`` tokens of a decision line, left to right.

    A rejection ends with free text (``message=schema violation at ...``): parsing stops at the
    first token that is not ``key=value`` and drops the field before it, whose value was cut.
    """
    fields: dict[str, str] = {}
    last = ""
    for token in message.split(" "):
        match = _FIELD.fullmatch(token)
        if match is None:
            fields.pop(last, None)
            break
        last = match.group(1)
        fields.setdefault(last, match.group(2))
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        if message.startswith(("decision=", "access=")):
            for key, value in decision_fields(message).items():
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


#: How long a repeated WARNING/ERROR is held before its count is written.
REPEAT_WINDOW_S = 60.0

#: Libraries that log a line per request at INFO (per call, per join, per subscription).
CHATTY_LIBRARIES = ("aiokafka", "httpx", "httpcore")


class RepeatLimiter(logging.Filter):
    """Lets the first WARNING+ of each (logger, level, message template) through, holds the
    repeats for ``window_s``, then lets the next one through with the count of those held."""

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()  # the metrics thread and the event loop both log
        #: key -> (start of the window, records held in it)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            started, held = self._seen.get(key, (now, -1))
            if held >= 0 and now - started < self.window_s:
                self._seen[key] = (started, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held > 0:  # this record ends a window in which others were held: say how many
            record.msg = (
                f"{record.getMessage()} ({held + 1:,} times in the last {now - started:.0f} s)"
            )
            record.args = None
        return True


class KnownNoise(logging.Filter):
    """Drops the false alarm every worker start logs: Faust's leader topic is looked up before
    Faust creates it (aiokafka ERROR "Topic <app>-__assignor-__leader not found in cluster
    metadata", Faust WARNING "Ignoring missing topic")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(a, str) and a.endswith("-__assignor-__leader") for a in args)


def quiet_libraries(level: str) -> None:
    """Per-call INFO lines of :data:`CHATTY_LIBRARIES` off, unless the level is DEBUG."""
    chosen = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(chosen)


def _filters() -> list[logging.Filter]:
    return [KnownNoise(), RepeatLimiter()]


def configure(level: str, fmt: str) -> None:
    """Root logging for CLI commands."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for f in _filters():
        handler.addFilter(f)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    quiet_libraries(level)


#: mode's own text format (what the worker wrote before Loa configured its handler).
WORKER_TEXT_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s]: %(message)s %(extra)s"


def worker_logging_config(level: str, fmt: str) -> dict[str, Any]:
    """``logging_config`` for Faust's worker (mode): mode's text format or JSON lines, with
    the filters above on the handler and the chatty libraries at WARNING."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"()": "mode.utils.logging.DefaultFormatter", "format": WORKER_TEXT_FORMAT}
    )
    quiet = "DEBUG" if level.upper() == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"noise": {"()": KnownNoise}, "repeats": {"()": RepeatLimiter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["noise", "repeats"],
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {name: {"level": quiet} for name in CHATTY_LIBRARIES},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
