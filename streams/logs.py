"""Log formats of the worker and CLI (``LOA_LOG_FORMAT``): ``text`` for people, ``json`` for
log shippers.

In ``json`` every record is one JSON object on one line: ``ts`` (ISO 8601 UTC), ``level``,
``logger``, ``msg`` (the formatted message), ``exc`` when there is a traceback, plus the
``key=value`` tokens of Loa's decision lines (``decision=accepted alert=... priority=...``)
and of the gateway's access lines (``access=POST path=... status=...``) as fields (the
standard keys above win), so "one line per alert decision" can be filtered on ``decision``
without parsing.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure", "decision_fields", "worker_logging_config"]

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


def configure(level: str, fmt: str) -> None:
    """Root logging for CLI commands."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def worker_logging_config(level: str, fmt: str) -> dict[str, Any] | None:
    """``logging_config`` for Faust's worker (mode): None keeps mode's own text format."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
