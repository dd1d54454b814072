"""Access records as the proxy writes them, for in-process tests: a real text stream handed to
`build_app(access_log=...)` (or `make_proxy(access_log=...)`), read back as parsed JSON lines.

The proxy's writer flushes once per event-loop turn, so by the time a test has its answer the record
is in the stream; `records()` parses every line and fails on one that is not a JSON object."""

from __future__ import annotations

import io
import json
from typing import Any


class AccessRecords(io.StringIO):
    def lines(self) -> list[str]:
        return self.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines():
            record = json.loads(line)
            assert isinstance(record, dict), line
            out.append(record)
        return out

    def last(self) -> dict[str, Any]:
        found = self.records()
        assert found, "no access record written"
        return found[-1]

    def clear(self) -> None:
        self.seek(0)
        self.truncate()
