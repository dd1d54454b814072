"""The telemetry of one application: a request's trace context and spans, its access record, and the
request metrics; created and shut down with the application.

    begin(ctx, headers)          trace ids into the context; the server span (None when not tracing)
    upstream(ctx, headers, ...)  around the call to Ray: the client span, `traceparent` for Ray,
                                 upstream latency and errors, open WebSockets
    record(ctx, span)            after the response (or the stream) has finished: the span ended, one
                                 access record written, the request counted
    record_grpc(call)            the same for a gRPC call's `CallRecord`

The record is built from the RequestContext only, never from a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..errors import UpstreamError
from ..model import RequestContext
from .metrics import RequestMetrics
from .record import Network, grpc_record, http_record
from .redaction import redact
from .tracing import Tracing, exporter_names, incoming, traceparent_of
from .writer import AccessWriter

if TYPE_CHECKING:
    from ..grpc import CallRecord

Headers = list[tuple[str, str]]


class Telemetry:
    def __init__(
        self,
        exporter: str | None = None,
        *,
        tenant: str = "",
        project: str = "",
        trusted_proxies: Sequence[Network] = (),
        forwarded_for_per_hop: int = 1,
        upstream: str = "",
        writer: AccessWriter | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        names = exporter_names(exporter, env)
        self.tracing: Tracing | None = Tracing(names, env) if names else None
        self.tenant, self.project, self.trusted = tenant, project, tuple(trusted_proxies)
        self.per_hop = forwarded_for_per_hop
        self.upstream_address = upstream.partition("://")[2]
        self.writer = writer or AccessWriter()
        self.metrics = RequestMetrics()
        self.connections_refused = 0  # over limits.max_connections
        self.grpc_open: Callable[[], int] = lambda: 0  # set by whoever runs the gRPC listener

    @property
    def provider(self) -> object | None:
        """The SDK's tracer provider (tests add span processors to it), None when not tracing."""
        return self.tracing.provider if self.tracing is not None else None

    def begin(self, ctx: RequestContext, headers: Mapping[str, str]) -> Span | None:
        caller = incoming(headers)
        if self.tracing is None:  # no span object: the caller's ids, for the record
            if caller is not None:
                ctx.trace_id, ctx.span_id, ctx.trace_sampled = caller.trace_id, caller.span_id, caller.sampled
            return None
        span = self.tracing.server_span(ctx.method, caller)
        sc = span.get_span_context()
        ctx.trace_id, ctx.span_id = f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
        ctx.trace_sampled = bool(sc.trace_flags.sampled)
        return span

    @contextlib.contextmanager
    def upstream(
        self,
        ctx: RequestContext,
        headers: Headers,
        span: Span | None,
        incoming_headers: Mapping[str, str],
        websocket: bool = False,
    ) -> Iterator[Headers]:
        """Around the call to Ray: yields the headers to send it, with the trace context."""
        client = None
        if span is not None and self.tracing is not None:
            client = self.tracing.client_span(ctx.method, span)
            headers = [(k, v) for k, v in headers if k.lower() != "traceparent"]
            headers.append(("traceparent", traceparent_of(client)))
        elif "traceparent" not in incoming_headers and ctx.trace_id:  # X-Cloud-Trace-Context alone
            flags = "01" if ctx.trace_sampled else "00"
            headers = [*headers, ("traceparent", f"00-{ctx.trace_id}-{ctx.span_id}-{flags}")]
        metrics = self.metrics
        if websocket:
            metrics.open_websockets += 1
        started = time.monotonic()
        try:
            yield headers
        except UpstreamError as exc:
            metrics.upstream_error(exc.kind.value)
            if client is not None:
                client.set_status(Status(StatusCode.ERROR, exc.kind.value))
                client.set_attribute("error.type", exc.kind.value)
            raise
        finally:
            if websocket:
                metrics.open_websockets -= 1
            else:
                metrics.upstream_seconds.observe(time.monotonic() - started)
            if ctx.extra.get("aborted") == "upstream":
                metrics.upstream_error("mid_response")
            if client is not None:
                self._annotate_client(client, ctx)
                client.end()

    def record(self, ctx: RequestContext, span: Span | None) -> None:
        """Finish the span and write the access record of a finished request."""
        duration = time.monotonic() - ctx.started
        record = http_record(ctx, self.project, self.trusted, time.time(), duration, self.per_hop)
        if span is not None:
            if span.is_recording():
                _annotate(span, record)
            span.end()
        self.metrics.request(record["kind"], record["verb"], record["decision"], ctx.status, duration)
        self.writer.write(record)

    def record_grpc(self, call: CallRecord) -> None:
        """The access record of a finished gRPC call (the listener's `record` callback)."""
        record = grpc_record(call, tenant=self.tenant, request_id=secrets.token_hex(16), now=time.time())
        if self.tracing is not None:
            end = time.time_ns()
            span = self.tracing.tracer.start_span(
                call.method.lstrip("/"), kind=SpanKind.SERVER, start_time=end - int(call.duration_s * 1e9)
            )
            sc = span.get_span_context()
            record["trace_id"], record["logging.googleapis.com/spanId"] = (
                f"{sc.trace_id:032x}",
                f"{sc.span_id:016x}",
            )
            record["logging.googleapis.com/trace_sampled"] = bool(sc.trace_flags.sampled)
            if self.project:
                record["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{sc.trace_id:032x}"
            if span.is_recording():
                _annotate(span, record)
            span.end(end_time=end)
        self.metrics.request("grpc", record["verb"], record["decision"], call.code, call.duration_s)
        self.writer.write(record)

    def _annotate_client(self, client: Span, ctx: RequestContext) -> None:
        if not client.is_recording():
            return
        host, _, port = self.upstream_address.rpartition(":")
        attrs: dict[str, str | int] = {"http.request.method": ctx.method, "server.address": host}
        if port.isdigit():
            attrs["server.port"] = int(port)
        if ctx.upstream_status is not None:
            attrs["http.response.status_code"] = ctx.upstream_status
            if ctx.upstream_status >= 500:
                client.set_status(Status(StatusCode.ERROR))
        client.set_attributes(attrs)

    def shutdown(self) -> None:
        """Write what is buffered; flush and stop the exporters (blocks up to their timeout)."""
        self.writer.flush()
        if self.tracing is not None:
            self.tracing.shutdown()

    async def close(self) -> None:
        """`shutdown()` off the event loop: an exporter's last export may wait on the network."""
        self.writer.flush()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)


_GRPC_CODES = (
    *("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND"),
    *("ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED"),
    *("OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"),
)


def _annotate(span: Span, record: dict[str, Any]) -> None:
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
