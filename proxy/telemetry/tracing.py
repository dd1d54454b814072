"""Traces: the caller's context read from `traceparent` (W3C) or `X-Cloud-Trace-Context` (Google's
load balancer), and, when tracing is on, an OpenTelemetry SDK tracer exporting through the standard
`OTEL_*` environment variables.

Off (no exporter) costs no span object: the caller's trace id and span id are parsed by hand and go
into the access record, and its context is passed on to Ray as it came (an `X-Cloud-Trace-Context`
alone becomes a `traceparent` too). On, the server span continues the caller's trace and Ray gets a
`traceparent` whose parent is the proxy's client span.

    OTEL_TRACES_EXPORTER          otlp, console, none (a comma-separated list; overridden by
                                  `tracing.exporter` in the config)
    OTEL_EXPORTER_OTLP_PROTOCOL   http/protobuf (default) or grpc; ..._TRACES_PROTOCOL wins
    OTEL_EXPORTER_OTLP_ENDPOINT   read by the exporter itself, as are ..._HEADERS, ..._TIMEOUT
    OTEL_TRACES_SAMPLER(_ARG)     read by the SDK (default parentbased_always_on)
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from ..errors import ConfigError
from .redaction import redact

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_CLOUD = re.compile(r"^([0-9a-fA-F]{32})/(\d{1,20})(?:;o=([0-9]+))?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True, slots=True)
class Incoming:
    """The caller's trace context: ids in lower-case hex."""

    trace_id: str
    span_id: str
    sampled: bool
    state: str = ""  # tracestate, passed on as it came

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str) -> Incoming | None:
    m = _TRACEPARENT.match(value.strip())
    if m is None or m[1] == "ff" or (m[1] == "00" and m[5]) or m[2] == _ZERO_TRACE or m[3] == _ZERO_SPAN:
        return None
    return Incoming(m[2], m[3], bool(int(m[4], 16) & 1))


def parse_cloud_trace(value: str) -> Incoming | None:
    """`TRACE_ID/SPAN_ID;o=1`, the span id in DECIMAL (an unsigned 64-bit number)."""
    m = _CLOUD.match(value.strip())
    if m is None:
        return None
    span = int(m[2])
    if not 0 < span < 2**64 or m[1] == _ZERO_TRACE:
        return None
    return Incoming(m[1].lower(), f"{span:016x}", m[3] is not None and int(m[3]) & 1 == 1)


def incoming(headers: Mapping[str, str]) -> Incoming | None:
    """The caller's context: W3C first (what newer load balancers and OpenTelemetry clients send)."""
    value = headers.get("traceparent")
    if value:
        found = parse_traceparent(value)
        if found is not None:
            return Incoming(found.trace_id, found.span_id, found.sampled, headers.get("tracestate", ""))
    value = headers.get("X-Cloud-Trace-Context")
    return parse_cloud_trace(value) if value else None


def exporter_names(configured: str | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Which exporters: the config's, else OTEL_TRACES_EXPORTER's; () means tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    text = configured if configured is not None else environ.get("OTEL_TRACES_EXPORTER", "none")
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ("otlp", "console", "none")]
    if unknown:
        raise ConfigError([f"OTEL_TRACES_EXPORTER: {text!r} must be otlp, console or none"])
    return tuple(n for n in names if n != "none")


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":  # stderr: stdout is the access log's
        return ConsoleSpanExporter(out=sys.stderr)
    key = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = environ.get(key) or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ConfigError([f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} must be http/protobuf or grpc"])
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http()


class Tracing:
    """The SDK's tracer provider, for one application; shut down (and flushed) with it."""

    def __init__(
        self, exporters: Sequence[str], environ: Mapping[str, str], service: str = "ray-iap-proxy"
    ) -> None:
        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or service})
        self.provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
        for name in exporters:
            self.add(BatchSpanProcessor(_exporter(name, environ)))
        self.tracer = self.provider.get_tracer("ray_iap_proxy")

    def add(self, processor: SpanProcessor) -> None:
        self.provider.add_span_processor(processor)

    def server_span(self, name: str, caller: Incoming | None, kind: SpanKind = SpanKind.SERVER) -> Span:
        context = None
        if caller is not None:
            parent = SpanContext(
                int(caller.trace_id, 16),
                int(caller.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if caller.sampled else TraceFlags.DEFAULT),
                trace_state=TraceState.from_header([caller.state]) if caller.state else None,
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent))
        return self.tracer.start_span(name, context=context, kind=kind)

    def client_span(self, name: str, parent: Span) -> Span:
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent), kind=SpanKind.CLIENT)

    def shutdown(self) -> None:
        self.provider.shutdown()


def traceparent_of(span: Span) -> str:
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags) & 1:02x}"


_GRPC_CODES = (
    *("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND"),
    *("ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED"),
    *("OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"),
)


def annotate(span: Span, record: dict[str, Any]) -> None:
    """The record's facts on the server span: semantic-convention names where they exist."""
    http = record["httpRequest"]
    attrs: dict[str, str | int | bool] = {
        "http.request.method": http["requestMethod"],
        "url.path": redact(str(http["requestUrl"])[:512]),
        "http.response.status_code": http["status"],
        "client.address": http["remoteIp"],
        "network.peer.address": str(record["peer"]),
        "network.protocol.version": str(http["protocol"]).partition("/")[2],
        "user_agent.original": redact(str(http["userAgent"])),
        "http.request.body.size": int(http["requestSize"]),
        "http.response.body.size": int(http["responseSize"]),
        "ray_iap.kind": str(record["kind"]),
        "ray_iap.request_id": str(record["request_id"]),
        "ray_iap.tenant": str(record["tenant"]),
        "ray_iap.decision": str(record["decision"]),
        "ray_iap.reason": redact(str(record["reason"])),
    }
    for key, name in (
        ("route", "http.route"),
        ("principal", "enduser.id"),
        ("credential", "ray_iap.credential"),
        ("verb", "ray_iap.verb"),
        ("source", "ray_iap.source"),
        ("job_id", "ray_iap.job_id"),
        ("upstream_status", "ray_iap.upstream_status"),
        ("aborted", "ray_iap.aborted"),
    ):
        value = record[key]
        if value is not None:  # every client-influenced string redacted: a job id is a path segment
            attrs[name] = value if isinstance(value, int) else redact(str(value))
    grpc = record["grpc"]
    if isinstance(grpc, dict):
        service, _, method = str(grpc["method"]).lstrip("/").rpartition("/")
        attrs |= {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        if grpc["code"] in _GRPC_CODES:
            attrs["rpc.grpc.status_code"] = _GRPC_CODES.index(grpc["code"])
    if record["route"] is not None and record["kind"] != "grpc":
        span.update_name(f"{http['requestMethod']} {record['route']}")
    span.set_attributes(attrs)
    if record["severity"] == "ERROR":
        span.set_status(Status(StatusCode.ERROR, str(record["decision"])))
