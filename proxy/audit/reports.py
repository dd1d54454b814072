"""The questions a security team asks of the access records, each a report over a stream of them:

    access    per principal: which verbs on which tenant, allowed and refused (counts, first, last)
    denials   every denial, with its reason and what decided it
    jobs      every job submitted, and by whom (and every stop and delete)
    grpc      Ray Client sessions: per client id, who, when, how many calls, bytes, codes
    records   the matching records themselves

Filters (`Filter`) apply before any report. `denials`, `jobs` and `records` stream one row per record;
`access` and `grpc` keep one row per key (principal × tenant × verb × decision; session), so memory
grows with the number of people and sessions, never with the number of records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..telemetry.record import rfc3339

REPORTS = ("access", "denials", "jobs", "grpc", "records")
JOB_VERBS = ("submit", "stop", "delete")


@dataclass(frozen=True, slots=True)
class Filter:
    since: float | None = None
    until: float | None = None
    principals: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    decisions: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    def __call__(self, r: dict[str, Any]) -> bool:
        ts = r["ts"]
        return (
            (self.since is None or ts >= self.since)
            and (self.until is None or ts < self.until)
            and (not self.principals or str(r.get("principal") or "").lower() in self.principals)
            and (not self.verbs or r.get("verb") in self.verbs)
            and (not self.decisions or r.get("decision") in self.decisions)
            and (not self.tenants or r.get("tenant") in self.tenants)
            and (not self.kinds or r.get("kind") in self.kinds)
        )


def _http(r: dict[str, Any]) -> dict[str, Any]:
    value = r.get("httpRequest")
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


Row = dict[str, Any]


def denials(records: Iterable[dict[str, Any]]) -> Iterator[Row]:
    for r in records:
        if r.get("decision") == "deny":
            http = _http(r)
            yield {
                "time": rfc3339(r["ts"]),
                "principal": r.get("principal") or "-",
                "tenant": r.get("tenant"),
                "verb": r.get("verb") or "-",
                "request": f"{http.get('requestMethod', '-')} {http.get('requestUrl', '-')}",
                "status": (r.get("grpc") or {}).get("code")
                if r.get("kind") == "grpc"
                else http.get("status"),
                "source": r.get("source") or "-",
                "reason": r.get("reason"),
                "request_id": r.get("request_id"),
            }


def jobs(records: Iterable[dict[str, Any]]) -> Iterator[Row]:
    """Submissions (POST /api/jobs/, `ray job submit`), stops and deletes; allowed or not."""
    for r in records:
        if r.get("verb") in JOB_VERBS and r.get("kind") != "grpc":
            http = _http(r)
            yield {
                "time": rfc3339(r["ts"]),
                "principal": r.get("principal") or "-",
                "tenant": r.get("tenant"),
                "verb": r.get("verb"),
                "job_id": r.get("job_id") or "-",
                "decision": r.get("decision"),
                "status": http.get("status"),
                "ray_status": r.get("upstream_status"),
                "request": f"{http.get('requestMethod', '-')} {http.get('requestUrl', '-')}",
                "request_id": r.get("request_id"),
            }


def access(records: Iterable[dict[str, Any]]) -> Iterator[Row]:
    rows: dict[tuple[str, str, str, str], Row] = {}
    for r in records:
        key = (
            r.get("principal") or "-",
            r.get("tenant") or "-",
            r.get("verb") or "-",
            r.get("decision") or "-",
        )
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                "principal": key[0],
                "tenant": key[1],
                "verb": key[2],
                "decision": key[3],
                "count": 0,
                "first": r["ts"],
                "last": r["ts"],
            }
        row["count"] += 1
        row["first"], row["last"] = min(row["first"], r["ts"]), max(row["last"], r["ts"])
    for key in sorted(rows):
        row = rows[key]
        yield {**row, "first": rfc3339(row["first"]), "last": rfc3339(row["last"])}


def grpc(records: Iterable[dict[str, Any]]) -> Iterator[Row]:
    sessions: dict[tuple[str, str], Row] = {}
    for r in records:
        call = r.get("grpc")
        if r.get("kind") != "grpc" or not isinstance(call, dict):
            continue
        key = (str(call.get("client_id") or "-"), r.get("principal") or "-")
        row = sessions.get(key)
        if row is None:
            row = sessions[key] = {
                "client_id": key[0],
                "principal": key[1],
                "tenant": r.get("tenant"),
                "first": r["ts"],
                "last": r["ts"],
                "calls": 0,
                "denied": 0,
                "bytes_in": 0,
                "bytes_out": 0,
                "codes": {},
            }
        http = _http(r)
        row["calls"] += 1
        row["denied"] += r.get("decision") == "deny"
        row["bytes_in"] += _int(http.get("requestSize"))
        row["bytes_out"] += _int(http.get("responseSize"))
        code = str(call.get("code"))
        row["codes"][code] = row["codes"].get(code, 0) + 1
        row["first"], row["last"] = min(row["first"], r["ts"]), max(row["last"], r["ts"])
    for key in sorted(sessions, key=lambda k: sessions[k]["first"]):
        row = sessions[key]
        codes = ",".join(f"{c}:{n}" for c, n in sorted(row["codes"].items()))
        yield {**row, "first": rfc3339(row["first"]), "last": rfc3339(row["last"]), "codes": codes}


def records_report(records: Iterable[dict[str, Any]]) -> Iterator[Row]:
    yield from records


RUN = {"access": access, "denials": denials, "jobs": jobs, "grpc": grpc, "records": records_report}
COLUMNS = {
    "access": ("principal", "tenant", "verb", "decision", "count", "first", "last"),
    "denials": ("time", "principal", "tenant", "verb", "request", "status", "source", "reason"),
    "jobs": ("time", "principal", "tenant", "verb", "job_id", "decision", "status", "ray_status"),
    "grpc": ("client_id", "principal", "first", "last", "calls", "denied", "bytes_in", "bytes_out", "codes"),
    "records": ("time", "principal", "tenant", "verb", "decision", "kind", "reason"),
}
