"""A loopback OTLP trace receiver, both transports, decoding the real protobuf
(`opentelemetry.proto`): OTLP/HTTP (`POST /v1/traces`, `application/x-protobuf`, gzip or not) on an
aiohttp server and OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`) on a
grpc.aio server.

It runs in a thread with its own event loop: the SDK's exporters send from their own worker thread
and a shutdown waits for them, so a receiver on the test's loop would be waited on by that very loop.

    with OtlpReceiver() as otlp:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.http_endpoint}   # or otlp.grpc_endpoint
        ...
        otlp.spans  # every span received: name, ids, parent, kind, attributes, via
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from aiohttp import web
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 server, 3 client
    attributes: dict[str, Any]
    service: str
    via: str  # "http" or "grpc"
    status_code: int = 0  # 0 unset, 1 ok, 2 error


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which is not None else None


def decode(body: bytes, via: str) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        service=str(resource.get("service.name", "")),
                        via=via,
                        status_code=s.status.code,
                    )
                )
    return out


@dataclass
class OtlpReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    http_port: int = 0
    grpc_port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    async def _http(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        self.spans += decode(body, "http")
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def _grpc(self, body: bytes, _context: aio.ServicerContext[bytes, bytes]) -> bytes:
        self.spans += decode(body, "grpc")
        return ExportTraceServiceResponse().SerializeToString()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._http)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = runner.addresses[0][1]
        server = aio.server()
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._grpc)},
        )
        server.add_generic_rpc_handlers([handler])
        self.grpc_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop(0)
            await runner.cleanup()

    def start(self) -> None:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="otlp-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the OTLP receiver did not start within 10 s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
