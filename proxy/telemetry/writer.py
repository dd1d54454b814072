"""The access log's writer: one JSON line per record, without the `logging` machinery (it cost a
quarter of the proxy's CPU per request: a LogRecord, handler locks, and a write and a flush each).

Lines are serialized and redacted at once, kept in a list, and written together once per turn of the
event loop (`call_soon`): still one line per request, in order, and at most one loop turn late. Outside
a running loop (a CLI, a test) a line is written at once. `flush()` at shutdown writes what is left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any, TextIO

from .redaction import redact

log = logging.getLogger("ray_iap_proxy.telemetry")
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # ASCII: any stdout encoding takes it


class AccessWriter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: sys.stdout as it is when a line is written
        self._lines: list[str] = []
        self._scheduled = False
        self.written = 0
        self.failures = 0

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(_dumps(record))

    def write_line(self, line: str) -> None:
        """One record already serialized (one line, no newline); redacted here."""
        self._lines.append(redact(line))
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self.stream if self.stream is not None else sys.stdout
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # stdout closed or full: the proxy keeps serving
            self.failures += len(lines)
            if self.failures == len(lines):  # the first time only
                log.error("access records cannot be written (%s); %d lost so far", exc, self.failures)
            return
        self.written += len(lines)
