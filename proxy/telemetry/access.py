"""The tracer, the access record and the request counters of one application.

One access record per request, written after the response (or the stream) has finished, built from
the RequestContext only: never from a body. A span per request carries the same ids.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..model import RequestContext
from .logs import access_log
from .redaction import redact


class Telemetry:
    """The tracer and counters of one application; created and shut down with it."""

    def __init__(self, exporter: str = "none", service: str = "ray-iap-proxy") -> None:
        # Without an exporter spans are not recorded (ALWAYS_OFF): they still carry trace ids, taken
        # from the caller's `traceparent` when there is one, for the access record.
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=ALWAYS_ON if exporter != "none" else ALWAYS_OFF,
        )
        if exporter == "console":
            self.provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        self.tracer: Tracer = self.provider.get_tracer("ray_iap_proxy")
        self.propagator = TraceContextTextMapPropagator()
        self.counts: Counter[str] = Counter()  # "decision status" -> requests
        self.connections_refused = 0  # over limits.max_connections

    def start_span(self, method: str, headers: Mapping[str, str]) -> Span:
        parent: Context = self.propagator.extract(carrier=headers)
        return self.tracer.start_span(f"proxy {method}", context=parent)

    def record(self, ctx: RequestContext, span: Span, user_agent: str = "") -> None:
        """Finish the span and write the access record for a finished request."""
        duration_ms = round((time.monotonic() - ctx.started) * 1000, 2)
        path, _, query = ctx.target.partition("?")
        if span.is_recording():
            self._annotate(span, ctx, path)
        span.end()
        self.counts[f"{ctx.decision or 'none'} {ctx.status}"] += 1
        record = {
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
            "user_agent": user_agent[:200] or None,
            **ctx.extra,
        }
        access_log.info(redact(json.dumps(record, separators=(",", ":"))))

    @staticmethod
    def _annotate(span: Span, ctx: RequestContext, path: str) -> None:
        attrs: dict[str, str | int | bool] = {
            "http.request.method": ctx.method,
            "url.path": redact(path[:512]),
            "http.response.status_code": ctx.status,
            "ray_iap.decision": ctx.decision,
            "ray_iap.reason": redact(ctx.reason),
            "ray_iap.tenant": ctx.tenant,
            "ray_iap.request_id": ctx.request_id,
        }
        if ctx.identity is not None:
            attrs["enduser.id"] = ctx.identity.email
        if ctx.verb is not None:
            attrs["ray_iap.verb"] = str(ctx.verb)
        if ctx.route is not None:
            attrs["http.route"] = ctx.route.pattern
        span.set_attributes(attrs)

    def shutdown(self) -> None:
        self.provider.shutdown()
