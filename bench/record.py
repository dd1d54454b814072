"""The cost of a request's telemetry, in this process: CPU µs per request for the trace context and
the access record, today's against the record written through `logging` as it was before the access
record v1 (commit 8ea2848, reproduced in `_legacy` below so that both run side by side).

    .venv/bin/python -m bench.record [--n 20000] [--json]

Each figure is the best of five rounds (the machine is shared), measured with `time.thread_time()`,
records written to /dev/null through a real file object:

- legacy        `start_span` (an unrecorded SDK span, the W3C propagator) + `record` through the
                `logging` machinery (a LogRecord, a StreamHandler's lock, a write and a flush each)
- begin         today's trace context with tracing off: the headers parsed by hand, no span object
- record        today's `record`: the v1 line written from the context, the request metrics, the
                line redacted and buffered;
                `record_batch16` lets 16 records share a loop turn's write, as under load
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = {"traceparent": TRACEPARENT, "User-Agent": "ray/2.60.0 python-requests/2.32"}


def _context() -> Any:
    from proxy.model import CredentialKind, Identity, RequestContext, Route, Verb

    ctx = RequestContext(
        "0123456789abcdef0123456789abcdef",
        "GET",
        "/api/jobs/raysubmit_abc?limit=10",
        "10.8.0.12",
        time.monotonic(),
        tenant="team-a",
        user_agent=HEADERS["User-Agent"],
        protocol="HTTP/1.1",
    )
    ctx.identity = Identity("alice@example.com", "1234567890", CredentialKind.IAP)
    ctx.route = Route("GET", "/api/jobs/{job_or_submission_id}", Verb.VIEW)
    ctx.verb, ctx.decision, ctx.source = Verb.VIEW, "allow", "static"
    ctx.reason = "role scientist via user:alice@example.com grants view"
    ctx.status, ctx.upstream_status, ctx.bytes_out = 200, 200, 1234
    return ctx


def _legacy(out: io.TextIOBase) -> tuple[Callable[[], Any], Callable[[Any, Any], None]]:
    """The record and span as they were (8ea2848: proxy/telemetry/access.py and logs.py)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from proxy.telemetry.redaction import redact

    provider = TracerProvider(resource=Resource.create({"service.name": "x"}), sampler=ALWAYS_OFF)
    tracer, propagator = provider.get_tracer("ray_iap_proxy"), TraceContextTextMapPropagator()
    log = logging.getLogger("bench.legacy_access")
    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    counts: Counter[str] = Counter()

    def begin() -> Any:
        ctx = _context()
        span = tracer.start_span("proxy GET", context=propagator.extract(carrier=HEADERS))
        sc = span.get_span_context()
        ctx.trace_id, ctx.span_id = f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
        return ctx, span

    def record(ctx: Any, span: Any) -> None:
        duration_ms = round((time.monotonic() - ctx.started) * 1000, 2)
        path, _, query = ctx.target.partition("?")
        span.end()
        counts[f"{ctx.decision or 'none'} {ctx.status}"] += 1
        rec = {
            "ts": round(time.time(), 3),
            "request_id": ctx.request_id,
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
            "remote": ctx.remote,
            "method": ctx.method,
            "path": path,
            "query": query or None,
            "status": ctx.status,
            "decision": ctx.decision,
            "reason": ctx.reason,
            "source": ctx.source or None,
            "email": ctx.identity.email if ctx.identity else None,
            "tenant": ctx.tenant,
            "route": ctx.route.pattern if ctx.route else None,
            "verb": str(ctx.verb) if ctx.verb else None,
            "upstream_status": ctx.upstream_status,
            "bytes_in": ctx.bytes_in,
            "bytes_out": ctx.bytes_out,
            "duration_ms": duration_ms,
            "websocket": ctx.websocket,
            "user_agent": HEADERS["User-Agent"][:200] or None,
            **ctx.extra,
        }
        log.info(redact(json.dumps(rec, separators=(",", ":"))))

    return begin, record


def _best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def measure(n: int = 20_000, rounds: int = 5) -> dict[str, float]:
    from proxy.telemetry import Telemetry
    from proxy.telemetry.writer import AccessWriter

    out = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        legacy_begin, legacy_record = _legacy(out)
        telemetry = Telemetry("none", tenant="team-a", writer=AccessWriter(out), environ={})

        def legacy() -> float:
            pairs = [legacy_begin() for _ in range(n)]
            t0 = time.thread_time()
            for ctx, span in pairs:
                legacy_record(ctx, span)
            recorded = time.thread_time() - t0
            t0 = time.thread_time()
            for _ in range(n):
                legacy_begin()
            return recorded + (time.thread_time() - t0) - _context_cost(n)

        def begin() -> float:
            contexts = [_context() for _ in range(n)]
            t0 = time.thread_time()
            for ctx in contexts:
                telemetry.begin(ctx, HEADERS)
            return time.thread_time() - t0

        async def record(batch: int) -> float:
            contexts = [_context() for _ in range(n)]
            for ctx in contexts:
                telemetry.begin(ctx, HEADERS)
            t0 = time.thread_time()
            for i, ctx in enumerate(contexts):
                telemetry.record(ctx, None)
                if i % batch == batch - 1:
                    telemetry.writer.flush()  # what the loop's turn does
            telemetry.writer.flush()
            return time.thread_time() - t0

        results = {
            "legacy_us": _best(rounds, legacy),
            "begin_us": _best(rounds, begin),
            "record_us": _best(rounds, lambda: asyncio.run(record(1))),
            "record_batch16_us": _best(rounds, lambda: asyncio.run(record(16))),
        }
    finally:
        out.close()
    out_us = {k: round(v / n * 1e6, 2) for k, v in results.items()}
    out_us["today_us"] = round(out_us["begin_us"] + out_us["record_us"], 2)
    return out_us


def _context_cost(n: int) -> float:
    """The time to build the test contexts themselves, taken out of the legacy `begin` figure."""
    t0 = time.thread_time()
    for _ in range(n):
        _context()
    return time.thread_time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.record", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="requests per round")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    figures = measure(args.n)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"per request, CPU µs (best of 5 rounds of {args.n}):")
    print(f"  before (8ea2848): span + record through logging  {figures['legacy_us']:7.2f}")
    print(f"  now: trace context (tracing off, no span)         {figures['begin_us']:7.2f}")
    print(f"  now: record (v1 line, metrics, buffered)          {figures['record_us']:7.2f}")
    print(f"  now: record, 16 lines per loop turn               {figures['record_batch16_us']:7.2f}")
    print(f"  now: both                                         {figures['today_us']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
