"""Traces through the real app: the span tree and its attributes (in-memory exporter), the caller's
context continued from `traceparent` or `X-Cloud-Trace-Context`, `traceparent` to Ray with the client
span as parent, OTLP export over HTTP and gRPC to a loopback receiver that decodes the real protobuf,
and no span object at all when tracing is off."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from devkit.otlp import OtlpReceiver
from devkit.ray_double import ASSERTION, RayDouble
from devkit.records import AccessRecords
from proxy.http.pipeline import PROXY

T = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACING = "tracing:\n  exporter: console\n"  # recorded (console goes to stderr); spans read in memory


async def traced(make_client: Any, records: AccessRecords, **kw: Any) -> tuple[Any, InMemorySpanExporter]:
    proxy = await make_client(extra=TRACING, access_log=records, **kw)
    spans = InMemorySpanExporter()
    proxy.server.app[PROXY].telemetry.provider.add_span_processor(SimpleSpanProcessor(spans))
    return proxy, spans


def sent_to_ray(stub: RayDouble) -> dict[str, str]:
    return {k.lower(): v for k, v in stub.hits[-1].headers}


async def test_span_tree_attributes_and_traceparent_to_ray(
    make_client: Any, mint: Any, stub_ray: tuple[RayDouble, str], access_records: AccessRecords
) -> None:
    proxy, spans = await traced(make_client, access_records)
    headers = {ASSERTION: mint(), "traceparent": f"00-{T}-{CALLER_SPAN}-01", "User-Agent": "t/1"}
    r = await proxy.get("/api/jobs/?limit=1", headers=headers)
    assert r.status == 200
    client, server = sorted(spans.get_finished_spans(), key=lambda s: s.kind is SpanKind.SERVER)
    assert server.kind is SpanKind.SERVER and client.kind is SpanKind.CLIENT
    assert f"{server.context.trace_id:032x}" == T and f"{client.context.trace_id:032x}" == T
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN  # continued
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    # Ray is told the client span is its parent
    assert sent_to_ray(stub_ray[0])["traceparent"] == f"00-{T}-{client.context.span_id:016x}-01"
    assert server.name == "GET /api/jobs/"
    record = access_records.last()
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/api/jobs/",
        "http.response.status_code": 200,
        "http.route": "/api/jobs/",
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "network.protocol.version": "1.1",
        "user_agent.original": "t/1",
        "http.request.body.size": 0,
        "http.response.body.size": int(record["httpRequest"]["responseSize"]),
        "enduser.id": "alice@example.com",
        "ray_iap.kind": "http",
        "ray_iap.request_id": record["request_id"],
        "ray_iap.tenant": "team-a",
        "ray_iap.decision": "allow",
        "ray_iap.reason": record["reason"],
        "ray_iap.credential": "iap",
        "ray_iap.verb": "view",
        "ray_iap.source": "static",
        "ray_iap.upstream_status": 200,
    }
    assert dict(client.attributes or {})["http.response.status_code"] == 200
    assert dict(client.attributes or {})["server.address"] == "127.0.0.1"
    # the record names the proxy's own server span, sampled
    assert (
        record["trace_id"] == T
        and record["logging.googleapis.com/spanId"] == f"{server.context.span_id:016x}"
    )
    assert record["logging.googleapis.com/trace_sampled"] is True


async def test_google_trace_header_is_continued_with_its_decimal_span_id(
    make_client: Any, mint: Any, stub_ray: tuple[RayDouble, str], access_records: AccessRecords
) -> None:
    proxy, spans = await traced(make_client, access_records)
    r = await proxy.get(
        "/api/version", headers={ASSERTION: mint(), "X-Cloud-Trace-Context": f"{T}/12345;o=1"}
    )
    assert r.status == 200
    server = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == 12345 and server.parent.is_remote
    assert sent_to_ray(stub_ray[0])["traceparent"].startswith(f"00-{T}-")


async def test_refused_requests_have_a_server_span_and_no_client_span(
    make_client: Any, mint: Any, access_records: AccessRecords
) -> None:
    proxy, spans = await traced(make_client, access_records)
    assert (
        await proxy.post("/api/jobs/", headers={ASSERTION: mint("bob@example.com")}, data=b"{}")
    ).status == 403
    (server,) = spans.get_finished_spans()
    attrs = dict(server.attributes or {})
    assert (
        server.kind is SpanKind.SERVER
        and attrs["ray_iap.decision"] == "deny"
        and attrs["ray_iap.verb"] == "submit"
    )
    assert server.status.status_code is StatusCode.UNSET  # a denial is not the proxy's error


async def test_upstream_failure_marks_both_spans(
    make_client: Any, mint: Any, access_records: AccessRecords
) -> None:
    proxy, spans = await traced(make_client, access_records, upstream="http://127.0.0.1:9")
    assert (await proxy.get("/api/version", headers={ASSERTION: mint()})).status == 502
    client, server = sorted(spans.get_finished_spans(), key=lambda s: s.kind is SpanKind.SERVER)
    assert client.status.status_code is StatusCode.ERROR and dict(client.attributes or {})["error.type"]
    assert server.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("header", ["traceparent", "X-Cloud-Trace-Context"])
async def test_not_tracing_no_span_the_callers_context_passed_on(
    make_client: Any, mint: Any, stub_ray: tuple[RayDouble, str], access_records: AccessRecords, header: str
) -> None:
    proxy = await make_client(access_log=access_records)
    telemetry = proxy.server.app[PROXY].telemetry
    assert telemetry.tracing is None and telemetry.provider is None  # no tracer, so no span object
    value = f"00-{T}-{CALLER_SPAN}-01" if header == "traceparent" else f"{T}/{int(CALLER_SPAN, 16)};o=1"
    assert (await proxy.get("/api/version", headers={ASSERTION: mint(), header: value})).status == 200
    # Ray gets the caller's context as it was (a Google header alone becomes a traceparent as well)
    assert sent_to_ray(stub_ray[0])["traceparent"] == f"00-{T}-{CALLER_SPAN}-01"
    record = access_records.last()
    assert record["trace_id"] == T and record["logging.googleapis.com/spanId"] == CALLER_SPAN


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_otlp_export_reaches_a_real_receiver(
    make_client: Any, mint: Any, access_records: AccessRecords, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    with OtlpReceiver() as otlp:
        endpoint = otlp.grpc_endpoint if protocol == "grpc" else otlp.http_endpoint
        for key, value in {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "proxy-under-test",
        }.items():
            monkeypatch.setenv(key, value)
        proxy = await make_client(access_log=access_records)
        headers = {ASSERTION: mint(), "traceparent": f"00-{T}-{CALLER_SPAN}-01"}
        assert (await proxy.get("/api/version", headers=headers)).status == 200
        await proxy.close()  # shutdown flushes the batch processor
    server = next(s for s in otlp.spans if s.kind == 2)
    client = next(s for s in otlp.spans if s.kind == 3)
    assert {s.via for s in otlp.spans} == {"grpc" if protocol == "grpc" else "http"}
    assert (
        server.trace_id == T
        and server.parent_span_id == CALLER_SPAN
        and client.parent_span_id == server.span_id
    )
    assert server.service == "proxy-under-test" and server.attributes["enduser.id"] == "alice@example.com"
    assert server.attributes["http.route"] == "/api/version" and server.name == "GET /api/version"
    assert access_records.last()["logging.googleapis.com/spanId"] == server.span_id


async def test_the_sampler_comes_from_the_environment(
    make_client: Any,
    mint: Any,
    stub_ray: tuple[RayDouble, str],
    access_records: AccessRecords,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    proxy, spans = await traced(make_client, access_records)
    assert (await proxy.get("/api/version", headers={ASSERTION: mint()})).status == 200
    assert spans.get_finished_spans() == ()  # sampled out: nothing recorded
    record = access_records.last()
    assert record["logging.googleapis.com/trace_sampled"] is False and len(record["trace_id"]) == 32
    assert sent_to_ray(stub_ray[0])["traceparent"].endswith("-00")  # Ray is told it is not sampled
