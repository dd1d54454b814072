"""`ray-iap-proxy audit`: the usual questions of a security team, answered from access records.

    reading.py   records in: our JSON lines, Cloud Logging entries, BigQuery rows; malformed input
                 reported, never fatal; one document in memory at a time
    reports.py   the filters and the reports (access, denials, jobs, grpc, records)

`run()` streams a report as a table for a terminal or as JSON lines, and returns what it read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..telemetry.record import rfc3339
from .reading import Malformed, Skipped, parse_time, records
from .reports import COLUMNS, REPORTS, RUN, Filter

__all__ = ["REPORTS", "Filter", "Stats", "parse_time", "run"]

MAX_REPORTED = 20  # malformed inputs named one by one; the rest only counted
WIDTHS = {"time": 24, "first": 24, "last": 24, "principal": 32, "tenant": 14, "verb": 7, "decision": 8}
WIDTHS |= {"request": 44, "status": 19, "source": 14, "job_id": 28, "client_id": 32, "kind": 9}
WIDTHS |= {"count": 7, "calls": 6, "denied": 6, "bytes_in": 11, "bytes_out": 11, "ray_status": 10}


@dataclass
class Stats:
    records: int = 0  # access records read
    matched: int = 0  # of which the filters kept
    skipped: int = 0  # well-formed documents that are no access record
    malformed: list[Malformed] = field(default_factory=list)
    malformed_count: int = 0
    rows: int = 0


def _kept(items: Iterable[Any], keep: Filter, stats: Stats) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, Malformed):
            stats.malformed_count += 1
            if len(stats.malformed) < MAX_REPORTED:
                stats.malformed.append(item)
        elif isinstance(item, Skipped):
            stats.skipped += 1
        else:
            stats.records += 1
            if keep(item):
                stats.matched += 1
                yield item


def _cell(value: Any, width: int | None) -> str:
    text = "-" if value is None else str(value)
    text = text.replace("\n", " ")
    if width is None or len(text) <= width:
        return text if width is None else text.ljust(width)
    return text[: width - 1] + "…"


def run(report: str, sources: Iterable[tuple[IO[str], str]], keep: Filter, fmt: str, out: IO[str]) -> Stats:
    """Write `report` over the records of `sources` that `keep` keeps; `fmt` is `table` or `json`
    (one JSON object per line)."""
    stats = Stats()
    rows = RUN[report](_kept(records(sources), keep, stats))
    columns = COLUMNS[report]
    if fmt == "table":
        widths = [WIDTHS.get(c) for c in columns[:-1]] + [None]
        out.write(
            "  ".join(_cell(c.upper(), w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n"
        )
    for row in rows:
        stats.rows += 1
        if fmt == "json":
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            continue
        if report == "records":
            row = {**row, "time": rfc3339(row["ts"])}
        cells = (_cell(row.get(c), w) for c, w in zip(columns, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")
    return stats
