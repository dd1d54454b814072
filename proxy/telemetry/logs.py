"""Where application logs go: stderr, as text for a person at a terminal or as JSON lines for Cloud
Logging (`severity`, `message`, `time` in RFC 3339, the logger's name). GKE's agent files plain
stderr text as ERROR whatever it says; the JSON form gives each line its own severity.

The access records do not pass through here: they are JSON lines on stdout (`writer.py`).

The redacting filter is installed on every handler of the root logger, so every record of every
logger that propagates to it (the proxy's, aiohttp's, grpc's, OpenTelemetry's) is cleaned, traceback
included, before it is written.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal, TextIO

from .record import rfc3339
from .redaction import RedactingFilter

LogFormat = Literal["auto", "text", "json"]
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in Cloud Logging's structured form."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # in `message`: Error Reporting finds a stack trace there
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        return json.dumps(
            {
                "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
                "time": rfc3339(record.created),
                "message": message,
                "logger": record.name,
            },
            separators=(",", ":"),
        )


def resolve(fmt: LogFormat, stream: TextIO) -> Literal["text", "json"]:
    """`auto`: text on a terminal, JSON otherwise (a container's stderr)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def setup_logging(level: int = logging.INFO, fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Application logs to stderr (or `stream`), redacted, in the format asked for."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    if resolve(fmt, out) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    guard_handlers()


def guard_handlers() -> None:
    """The redacting filter on every handler of the root logger that lacks one (idempotent): a
    handler added later by a library gets it at the next call."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
