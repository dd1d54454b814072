"""Access records in, whatever carried them: the proxy's own JSON lines, Cloud Logging entries (the
record under `jsonPayload`, its special fields lifted into the entry: `gcloud logging read
--format=json`, a Cloud Storage sink), or rows of a BigQuery sink (`bq query --format=json`,
`bq extract` as JSON lines). A top-level JSON array or one document per line, from files or stdin.

Streaming: one document in memory at a time (a JSON array is decoded element by element). A line or
element that cannot be read is reported (`Malformed`) and skipped; reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

SCHEMA_PREFIX = "ray-iap-proxy/access/"
CHUNK = 64 * 1024
MAX_DOCUMENT = 4 * 1024 * 1024  # a single record is ~1 KiB; this bounds what one bad input can hold
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Malformed:
    where: str  # "FILE:LINE"
    why: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed document that is not an access record (another log line, an app log)."""

    where: str


Item = dict[str, Any] | Malformed | Skipped


def documents(stream: IO[str], name: str) -> Iterator[tuple[str, Any] | Malformed]:
    """(where, decoded document) for each document in `stream`, or Malformed."""
    head, skipped = stream.read(1), 0
    while head and head.isspace():
        skipped += head == "\n"
        head = stream.read(1)
    if head == "[":
        yield from _array(stream, name)
        return
    first = (head + stream.readline(MAX_DOCUMENT),) if head else ()
    for number, line in enumerate(_chain(first, stream), skipped + 1):
        text = line.strip()
        if not text:
            continue
        where = f"{name}:{number}"
        if len(text) > MAX_DOCUMENT:
            yield Malformed(where, f"longer than {MAX_DOCUMENT} bytes")
            continue
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as exc:
            yield Malformed(where, f"not JSON ({exc.msg} at column {exc.colno})")


def _chain(first: tuple[str, ...], stream: IO[str]) -> Iterator[str]:
    """Lines, each read with a bound: a longer one is yielded cut (and so reported), the rest of it
    skipped without being held."""
    for line in first:
        yield line
        if len(line) > MAX_DOCUMENT and not line.endswith("\n"):
            _skip_line(stream)
    while line := stream.readline(MAX_DOCUMENT + 1):
        yield line
        if len(line) > MAX_DOCUMENT and not line.endswith("\n"):
            _skip_line(stream)


def _skip_line(stream: IO[str]) -> None:
    while (piece := stream.readline(CHUNK)) and not piece.endswith("\n"):
        pass


def _array(stream: IO[str], name: str) -> Iterator[tuple[str, Any] | Malformed]:
    """Elements of a top-level JSON array, decoded one at a time from a bounded buffer."""
    buffer, index, eof = "", 0, False
    while True:
        stripped = buffer.lstrip(" \t\r\n,")
        if stripped.startswith("]"):
            return
        if stripped:
            try:
                value, end = _decoder.raw_decode(stripped)
            except json.JSONDecodeError as exc:
                if eof or len(stripped) > MAX_DOCUMENT:
                    yield Malformed(f"{name}:[{index}]", f"not JSON ({exc.msg})")
                    return  # an array cannot be re-synchronised safely
            else:
                if end < len(stripped) or eof:
                    yield f"{name}:[{index}]", value
                    index += 1
                    buffer = stripped[end:]
                    continue
        if eof:
            if stripped:
                yield Malformed(f"{name}:[{index}]", "the array is not closed")
            return
        chunk = stream.read(CHUNK)
        eof = not chunk
        buffer = stripped + chunk


def record_of(document: Any) -> dict[str, Any] | None:
    """The access record in a document of any of the three shapes, or None if it holds none."""
    if not isinstance(document, dict):
        return None
    if str(document.get("schema", "")).startswith(SCHEMA_PREFIX):
        return document
    payload = document.get("jsonPayload")
    if isinstance(payload, dict) and str(payload.get("schema", "")).startswith(SCHEMA_PREFIX):
        return _lifted(document, payload)
    return None


def _lifted(entry: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Logging entry (or a BigQuery row of one) back into the record as written: the fields
    Cloud Logging lifted out of the payload put back."""
    record = dict(payload)
    if isinstance(entry.get("httpRequest"), dict):
        record["httpRequest"] = entry["httpRequest"]
    record.setdefault("severity", entry.get("severity"))
    for ours, theirs in (
        ("logging.googleapis.com/trace", "trace"),
        ("logging.googleapis.com/spanId", "spanId"),
        ("logging.googleapis.com/trace_sampled", "traceSampled"),
    ):
        if ours not in record and theirs in entry:
            record[ours] = entry[theirs]
    if "ts" not in record and entry.get("timestamp") is not None:
        when = parse_time(entry["timestamp"])
        if when is not None:
            record["ts"] = when
    return record


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from a number, RFC 3339 (`...Z`, `+00:00`, nanoseconds), or BigQuery's
    `2026-04-24 03:06:40.25 UTC`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    text = text.replace(" UTC", "+00:00").replace("Z", "+00:00").replace(" ", "T", 1)
    head, dot, frac = text.partition(".")
    if dot:  # Python takes at most 6 fraction digits
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def records(sources: Iterable[tuple[IO[str], str]]) -> Iterator[Item]:
    """Every access record of every source, in order, with what could not be read."""
    for stream, name in sources:
        for found in documents(stream, name):
            if isinstance(found, Malformed):
                yield found
                continue
            where, document = found
            record = record_of(document)
            if record is None:
                yield Skipped(where)
            elif not isinstance(record.get("ts"), int | float):
                when = parse_time(record.get("time"))
                if when is None:
                    yield Malformed(where, "an access record without a readable time")
                else:
                    yield {**record, "ts": when}
            else:
                yield record
