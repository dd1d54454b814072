"""Tracing, the access record, counters in Prometheus' text format, and redaction of secrets at the
logging layer.

One access record per request, written after the response (or the stream) has finished, built from
the RequestContext only: never from a body. A span per request carries the same ids. Metrics carry
counts and states only: never an identity, a path or a token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .model import RequestContext

ACCESS_LOGGER = "ray_iap_proxy.access"
access_log = logging.getLogger(ACCESS_LOGGER)

# A JWS (three base64url parts, the first starting like a JSON header), bearer credentials, and
# credential cookies. A second line of defence: nothing should log them in the first place.
_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|(?i:ray-authentication-token|GCP_IAP_[A-Z_]*|__Host-GCP_IAP_[A-Z_0-9]*)=[^;\s\"]+"
)


_MARKERS = ("eyj", "bearer", "ray-authentication-token", "gcp_iap_")


def redact(text: str) -> str:
    low = text.lower()  # a cheap look first: most lines hold none of the markers
    if not any(marker in low for marker in _MARKERS):
        return text
    return _SECRETS.sub("[redacted]", text)


class RedactingFilter(logging.Filter):
    """Redacts the message and any traceback: an exception's text can quote a raw request."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """App logs to stderr, access records (JSON lines) to stdout; both redacted (access records by
    `Telemetry.record`, everything else by the handler's filter)."""
    redactor = RedactingFilter()
    app = logging.StreamHandler(sys.stderr)
    app.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    app.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [app]
    root.setLevel(level)
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(message)s"))  # records are redacted as they are built
    access_log.handlers[:] = [out]
    access_log.propagate = False
    access_log.setLevel(logging.INFO)


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


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(metrics: Iterable[Metric]) -> str:
    """Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for m in metrics:
        lines += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}"]
        for labels, value in m.samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{m.name}{{{text}}} {_number(value)}" if text else f"{m.name} {_number(value)}")
    return "\n".join(lines) + "\n"
