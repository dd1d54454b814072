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
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..errors import UpstreamError
from ..model import RequestContext
from .line import http_line
from .metrics import RequestMetrics
from .record import Network, grpc_record
from .tracing import Tracing, annotate, exporter_names, incoming, traceparent_of
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

    def upstream(
        self,
        ctx: RequestContext,
        headers: Headers,
        span: Span | None,
        incoming_headers: Mapping[str, str],
        websocket: bool = False,
    ) -> UpstreamCall:
        """Around the call to Ray (`with ... as headers`): the headers to send it, with the trace
        context; on the way out the client span, upstream latency and errors, open WebSockets."""
        client = None
        if span is not None and self.tracing is not None:
            client = self.tracing.client_span(ctx.method, span)
            headers = [(k, v) for k, v in headers if k.lower() != "traceparent"]
            headers.append(("traceparent", traceparent_of(client)))
        elif ctx.trace_id and "traceparent" not in incoming_headers:  # X-Cloud-Trace-Context alone
            flags = "01" if ctx.trace_sampled else "00"
            headers = [*headers, ("traceparent", f"00-{ctx.trace_id}-{ctx.span_id}-{flags}")]
        return UpstreamCall(self, ctx, headers, client, websocket)

    def record(self, ctx: RequestContext, span: Span | None) -> None:
        """Finish the span and write the access record of a finished request."""
        duration = time.monotonic() - ctx.started
        line, kind, verb, decision = http_line(
            ctx, self.project, self.trusted, time.time(), duration, self.per_hop
        )
        if span is not None:
            if span.is_recording():
                annotate(span, json.loads(line))
            span.end()
        self.metrics.request(kind, verb, decision, ctx.status, duration)
        self.writer.write_line(line)

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
                annotate(span, record)
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


class UpstreamCall:
    """One call to Ray as telemetry sees it; a plain class (a generator-based context manager costs
    microseconds a request)."""

    __slots__ = ("client", "ctx", "headers", "started", "telemetry", "websocket")

    def __init__(
        self,
        telemetry: Telemetry,
        ctx: RequestContext,
        headers: Headers,
        client: Span | None,
        websocket: bool,
    ) -> None:
        self.telemetry, self.ctx, self.headers, self.client = telemetry, ctx, headers, client
        self.websocket = websocket
        self.started = 0.0

    def __enter__(self) -> Headers:
        if self.websocket:
            self.telemetry.metrics.open_websockets += 1
        self.started = time.monotonic()
        return self.headers

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        metrics, client = self.telemetry.metrics, self.client
        if self.websocket:
            metrics.open_websockets -= 1
        else:
            metrics.upstream_seconds.observe(time.monotonic() - self.started)
        if isinstance(exc, UpstreamError):
            metrics.upstream_error(exc.kind.value)
            if client is not None:
                client.set_status(Status(StatusCode.ERROR, exc.kind.value))
                client.set_attribute("error.type", exc.kind.value)
        elif self.ctx.extra.get("aborted") == "upstream":
            metrics.upstream_error("mid_response")
        if client is not None:
            self.telemetry._annotate_client(client, self.ctx)
            client.end()
