"""`ray-iap-proxy audit REPORT [FILE ...]`: reports over access records (proxy/audit/)."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from typing import IO

from .common import DefaultsHelp, add_parser
from .errors import EXIT_OK, usage_error

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


REPORTS_HELP = {
    "access": "per principal: which verbs on which tenant, allowed and refused",
    "denials": "every denial with its reason and what decided it",
    "jobs": "every job submitted, stopped or deleted, and by whom",
    "grpc": "Ray Client sessions: who, when, calls, bytes, codes",
    "records": "the matching records themselves",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_parser(
        sub,
        "audit",
        "answer a security team's questions from access records (files or stdin)",
        "Reports over access records as the proxy writes them (JSON lines on stdout), as Cloud Logging "
        "exports them (`gcloud logging read --format=json`, a Cloud Storage sink: the record under "
        "`jsonPayload`) or as a BigQuery sink holds them (`bq query --format=json`). Streams any size; "
        "lines that cannot be read are reported on stderr and skipped. `audit REPORT --help` for the "
        "filters.\n\n"
        "examples:\n"
        "  kubectl logs ray-head -c iap-proxy | ray-iap-proxy audit denials --since 24h\n"
        "  ray-iap-proxy audit access --principal alice@example.com --since 7d export.json\n"
        "  ray-iap-proxy audit jobs --format json access-*.log",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("files", nargs="*", metavar="FILE", help="access records; none or `-`: stdin")
    common.add_argument(
        "--since", metavar="TIME", help="RFC 3339 (2026-05-01T00:00:00Z) or ago (30m, 24h, 7d)"
    )
    common.add_argument("--until", metavar="TIME", help="as --since; records before it")
    common.add_argument("--principal", action="append", default=[], metavar="EMAIL", help="repeatable")
    common.add_argument("--verb", action="append", default=[], help="repeatable: view, logs, submit, ...")
    common.add_argument(
        "--decision",
        action="append",
        default=[],
        choices=["allow", "deny", "local", "error"],
        help="repeatable",
    )
    common.add_argument("--tenant", action="append", default=[], help="repeatable")
    common.add_argument(
        "--kind", action="append", default=[], choices=["http", "websocket", "grpc"], help="repeatable"
    )
    common.add_argument(
        "--format", default="table", choices=["table", "json"], help="json: one JSON object per line"
    )
    reports = s.add_subparsers(dest="report", required=True, metavar="REPORT", help="the question")
    for name, text in REPORTS_HELP.items():
        r = reports.add_parser(
            name, help=text, description=text, parents=[common], formatter_class=DefaultsHelp
        )
        r.set_defaults(func=audit)


def when(option: str, value: str | None, now: float) -> float | None:
    from ..audit import parse_time

    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        return now - float(relative[1]) * _UNIT[relative[2]]
    parsed = parse_time(value)
    if parsed is None:
        usage_error(option, f"{value!r} is neither RFC 3339 (2026-05-01T00:00:00Z) nor ago (30m, 24h, 7d)")
    return parsed


def audit(args: argparse.Namespace) -> int:
    from ..audit import Filter, run

    now = time.time()
    keep = Filter(
        since=when("--since", args.since, now),
        until=when("--until", args.until, now),
        principals=frozenset(p.lower() for p in args.principal),
        verbs=frozenset(args.verb),
        decisions=frozenset(args.decision),
        tenants=frozenset(args.tenant),
        kinds=frozenset(args.kind),
    )
    with contextlib.ExitStack() as stack:
        sources: list[tuple[IO[str], str]] = []
        for name in args.files or ["-"]:
            if name == "-":
                sources.append((sys.stdin, "<stdin>"))
                continue
            try:
                sources.append((stack.enter_context(open(name, encoding="utf-8", errors="replace")), name))
            except OSError as exc:
                usage_error(name, f"cannot be read ({exc.strerror or exc})")
        stats = run(args.report, sources, keep, args.format, sys.stdout)
    for bad in stats.malformed:
        print(f"{bad.where}: skipped: {bad.why}", file=sys.stderr)
    if stats.malformed_count > len(stats.malformed):
        print(f"... and {stats.malformed_count - len(stats.malformed)} more skipped", file=sys.stderr)
    skipped = f", {stats.skipped} other line(s) ignored" if stats.skipped else ""
    print(
        f"{stats.records} record(s) read, {stats.matched} matched, {stats.rows} row(s); "
        f"{stats.malformed_count} malformed{skipped}",
        file=sys.stderr,
    )
    return EXIT_OK
